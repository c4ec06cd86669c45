"""Seed entities and relationships with generate_series (fast enough for 1,000,000 entities).

Run: python3 -m octollm_lab.seed_data [--entities N] [--relationships-per-entity K] [--reset] [--schema] [--if-empty]

Connection from db.py's POSTGRES_* variables (POSTGRES_USER may be the superuser).
Values are deterministic (no random()), so that the top entities by access_count are stable.
Re-running with the same N adds nothing: entities conflict on their key and relationships are
only added for entities beyond the highest one that already has some.
"""

import argparse
import os
import time

import psycopg2

from .db import dsn_from_env

# psycopg2 parameters: %(name)s; a literal modulo is written %%.
INSERT_ENTITIES = """
INSERT INTO entities (entity_id, entity_type, name, properties, access_count)
SELECT g, (ARRAY['person', 'project', 'document', 'tool', 'concept'])[1 + g %% 5], 'entity-' || g,
       jsonb_build_object('seq', g, 'source', 'seed'),
       (g * 7919) %% 1000
FROM generate_series(1::bigint, %(entities)s) AS g
ON CONFLICT (entity_id) DO NOTHING
"""

INSERT_RELATIONSHIPS = """
INSERT INTO relationships (from_entity_id, to_entity_id, relationship_type, properties)
SELECT g, 1 + (g * (31 + k) + k) %% %(entities)s,
       (ARRAY['related_to', 'depends_on', 'mentions'])[1 + (g + k) %% 3],
       jsonb_build_object('weight', (g + k) %% 10)
FROM generate_series((SELECT COALESCE(max(from_entity_id), 0)::bigint + 1 FROM relationships),
                     %(entities)s) AS g,
     generate_series(1, %(per_entity)s) AS k
"""


def apply_schema(conn):
    path = os.path.join(os.path.dirname(__file__), "schema.sql")
    with open(path, encoding="utf-8") as schema, conn.cursor() as cur:
        cur.execute(schema.read())


def seed(conn, entities=20000, per_entity=2, reset=False):
    """Insert up to `entities` entities and `per_entity` relationships each; return (entities, relationships) added."""
    with conn.cursor() as cur:
        if reset:
            cur.execute("TRUNCATE entities, relationships RESTART IDENTITY")
        params = {"entities": entities, "per_entity": per_entity}
        cur.execute(INSERT_ENTITIES, params)
        added_entities = cur.rowcount
        cur.execute(INSERT_RELATIONSHIPS, params)
        added_relationships = cur.rowcount
    conn.commit()
    with conn.cursor() as cur:
        conn.autocommit = True
        cur.execute("ANALYZE entities")
        cur.execute("ANALYZE relationships")
        conn.autocommit = False
    return added_entities, added_relationships


def table_empty(conn, table):
    with conn.cursor() as cur:
        cur.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {table})")
        empty = cur.fetchone()[0]
    conn.rollback()
    return empty


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=int(os.environ.get("SEED_ENTITIES", 20000)))
    parser.add_argument("--relationships-per-entity", type=int, default=2)
    parser.add_argument("--reset", action="store_true", help="truncate entities and relationships first")
    parser.add_argument("--schema", action="store_true", help="apply schema.sql first")
    parser.add_argument("--if-empty", action="store_true", help="do nothing when entities has rows")
    args = parser.parse_args(argv)
    conn = psycopg2.connect(**dsn_from_env("seed_data"))
    try:
        if args.schema:
            apply_schema(conn)
            conn.commit()
        if args.if_empty and not table_empty(conn, "entities"):
            print("seed skipped: entities is not empty")
            return
        started = time.monotonic()
        added = seed(conn, args.entities, args.relationships_per_entity, args.reset)
        print(f"seeded entities={added[0]} relationships={added[1]} seconds={time.monotonic() - started:.1f}")
    finally:
        conn.close()


if __name__ == "__main__":
    main()
