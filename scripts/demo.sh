#!/usr/bin/env bash
# The demo: set up, bring the lab up, break Redis' eviction policy under memory pressure, and let
# octoctl find and repair it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step "octoctl lab up"
octoctl lab up
step "octoctl lab break redis-eviction   (maxmemory-policy noeviction, Redis full of keys without TTL)"
octoctl lab break redis-eviction
step "octoctl diagnose cache"
octoctl diagnose cache || true
step "octoctl fix cache --dry-run"
octoctl fix cache --dry-run || true
step "octoctl fix cache --approve"
octoctl fix cache --approve
step "octoctl fix cache   (again: nothing left to do)"
octoctl fix cache
step "done: 'octoctl lab heal --all' undoes the fault's leftovers, 'octoctl lab down' stops the lab"
