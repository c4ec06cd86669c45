#!/usr/bin/env bash
# The test command: set up (idempotent), bring the lab up, run every test against it.
# With CI=true a skipped lab, Docker or Molecule test fails the run (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
# Short time constants so that faults show within seconds (see octoctl/lab.py LabSettings).
export OCTOLLM_LAB_CACHE_TTL=${OCTOLLM_LAB_CACHE_TTL:-30}
if [ "${CI:-}" = "true" ]; then
  # CI starts from a clean lab: no state, containers, volumes or fault helpers left by an earlier run.
  docker ps -aq --filter label=com.docker.compose.project=octollm | xargs -r docker rm -f >/dev/null
  docker ps -aq --filter label=octollm.fault | xargs -r docker rm -f >/dev/null
  docker volume ls -q --filter label=com.docker.compose.project=octollm | xargs -r docker volume rm >/dev/null
  rm -rf "${OCTOLLM_LAB_STATE:-${XDG_STATE_HOME:-$HOME/.local/state}/octollm-lab}"
fi
octoctl lab up
exec python -m pytest -p no:cacheprovider --timeout=900 "$@"
