#!/bin/sh
# PostgreSQL for the lab: initialise the cluster on first start (users, database, schema,
# pg_stat_statements, amcheck), then run the server in the foreground as user postgres.
set -eu
BIN=/usr/lib/postgresql/15/bin
ROOT=/var/lib/postgresql/octollm
PGDATA=$ROOT/data
mkdir -p "$PGDATA" /var/run/postgresql
chown -R postgres:postgres "$ROOT" /var/run/postgresql
chmod 700 "$PGDATA"

as_postgres() { runuser -u postgres -- "$@"; }

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s' "$POSTGRES_ADMIN_PASSWORD" > "$pwfile"
  chown postgres "$pwfile"
  as_postgres "$BIN/initdb" -D "$PGDATA" -U postgres --pwfile="$pwfile" \
    --auth-host=scram-sha-256 --auth-local=peer --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  cat >> "$PGDATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = 5432
max_connections = ${POSTGRES_MAX_CONNECTIONS:-40}
superuser_reserved_connections = 5
shared_buffers = 64MB
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
unix_socket_directories = '/var/run/postgresql'
log_line_prefix = '%m [%p] %q%u@%d '
log_connections = off
CONF
  as_postgres "$BIN/pg_ctl" -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  as_postgres psql -v ON_ERROR_STOP=1 -q -d postgres \
    -v pw="$POSTGRES_PASSWORD" <<'SQL'
CREATE ROLE octollm LOGIN PASSWORD :'pw';
CREATE DATABASE octollm OWNER octollm;
SQL
  as_postgres psql -v ON_ERROR_STOP=1 -q -d octollm -c 'GRANT pg_read_all_stats TO octollm;' \
    -c 'ALTER SCHEMA public OWNER TO octollm;'
  # Extensions need a superuser; the tables belong to octollm.
  as_postgres psql -v ON_ERROR_STOP=1 -q -d octollm \
    -c 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements;' -c 'CREATE EXTENSION IF NOT EXISTS amcheck;'
  as_postgres psql -v ON_ERROR_STOP=1 -q -d octollm -c 'SET ROLE octollm;' -f /opt/octollm/octollm_lab/schema.sql
  as_postgres "$BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec runuser -u postgres -- "$BIN/postgres" -D "$PGDATA"
