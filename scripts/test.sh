#!/usr/bin/env bash
# The test command: set up (idempotent), bring the lab up, run every test against it: the full lab's tests, then the
# minimal profile's (`minimal` marker) on the lab brought up again as its minimal profile, then the full lab again
# (not under CI). With arguments: pytest with them, on the profile OCTOLLM_LAB_PROFILE names (default full).
# With CI=true a skipped lab, Docker, Molecule or minimal-profile test fails the run (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
# Short time constants so that faults show within seconds (see lab/ctl/octollm_labctl/lab.py LabSettings).
export OCTOLLM_LAB_CACHE_TTL=${OCTOLLM_LAB_CACHE_TTL:-30}
if [ "${CI:-}" = "true" ]; then
  # CI starts from a clean lab: no state, containers, volumes or fault helpers left by an earlier run.
  for project in octollm llmstack; do  # the lab's profiles (octollm_labctl.lab.PROFILES)
    docker ps -aq --filter label=com.docker.compose.project=$project | xargs -r docker rm -f >/dev/null
  done
  docker ps -aq --filter label=octollm.fault | xargs -r docker rm -f >/dev/null
  pkill -f "octoctl listen" 2>/dev/null || true  # a listener of an earlier run would hold its ports
  for project in octollm llmstack; do
    docker volume ls -q --filter label=com.docker.compose.project=$project | xargs -r docker volume rm >/dev/null
  done
  rm -rf "${OCTOLLM_LAB_STATE:-${XDG_STATE_HOME:-$HOME/.local/state}/octollm-lab}"
fi
PYTEST=(python -m pytest -p no:cacheprovider --timeout=900 --durations=0 --durations-min=20)
if [ $# -gt 0 ]; then
  octoctl lab up --profile "${OCTOLLM_LAB_PROFILE:-full}"
  exec "${PYTEST[@]}" "$@"
fi
octoctl lab up
# The whole suite in two processes at once: the lab tests (one shared lab, so one after the other; they spend most
# of their time waiting on the lab) and the tests that need no lab (unit, collection plugins, the Kubernetes
# emulator). Both must pass; the lab-free log is printed after the lab run. The lab-free process runs niced: it
# finishes long before the lab run either way, and the lab's services and their time windows get the CPU first.
LAB_FREE_LOG=$(mktemp "${TMPDIR:-/tmp}/octollm-lab-free.XXXXXX.log")
nice -n 10 "${PYTEST[@]}" -m "not (lab or docker or molecule or minimal)" >"$LAB_FREE_LOG" 2>&1 &
LAB_FREE=$!
trap 'kill "$LAB_FREE" 2>/dev/null || true' EXIT
lab_rc=0
"${PYTEST[@]}" -m "(lab or docker or molecule) and not minimal" || lab_rc=$?
# The minimal profile: the same services laid out as another deployment (lab/profiles/minimal.yaml); `lab up` heals
# the full lab and takes it down first.
minimal_started=$SECONDS
octoctl lab up --profile minimal || lab_rc=1
"${PYTEST[@]}" -m minimal || lab_rc=$?
echo "minimal profile: up and its tests in $((SECONDS - minimal_started)) s"
if [ "${CI:-}" != "true" ]; then
  octoctl lab up || lab_rc=1  # the full lab again, as the lab's other users expect it
fi
lab_free_rc=0
wait "$LAB_FREE" || lab_free_rc=$?
trap - EXIT
echo "=== tests that need no lab (ran alongside) ==="
cat "$LAB_FREE_LOG"
rm -f "$LAB_FREE_LOG"
echo "lab tests: exit $lab_rc; lab-free tests: exit $lab_free_rc"
[ "$lab_rc" -eq 0 ] && [ "$lab_free_rc" -eq 0 ]
