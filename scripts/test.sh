#!/usr/bin/env bash
# The test command: set up (idempotent), bring the lab up, run every test against it.
# With CI=true a skipped lab, Docker or Molecule test fails the run (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
# Short time constants so that faults show within seconds (see octoctl/lab.py LabSettings).
export OCTOLLM_LAB_CACHE_TTL=${OCTOLLM_LAB_CACHE_TTL:-30}
octoctl lab up
exec python -m pytest -p no:cacheprovider --timeout=900 "$@"
