#!/usr/bin/env bash
# Build the lab's image. Its base, debian:bookworm, is pulled where a registry answers and made locally
# with debootstrap where none does. Re-runs reuse the base and Docker's layer cache.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${OCTOLLM_LAB_TAG:-dev}
log() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if ! docker image inspect debian:bookworm >/dev/null 2>&1; then
  if timeout 60 docker pull -q debian:bookworm >/dev/null 2>&1; then
    log "pulled debian:bookworm"
  else
    command -v debootstrap >/dev/null || { echo "build-images: no registry and no debootstrap" >&2; exit 3; }
    rootfs=$(mktemp -d /var/tmp/octollm-rootfs.XXXXXX)
    mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
    log "debootstrap bookworm from $mirror (about 30 s)"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/var/tmp/octollm-debootstrap.log 2>&1
    tar -C "$rootfs" -c . | docker import - debian:bookworm >/dev/null
    rm -rf "$rootfs"
    log "made debian:bookworm locally"
  fi
fi

# Wheels for the image's own venv (py-spy, qdrant-client), downloaded with the host's pip settings.
if [ ! -f lab/.wheels/.complete ]; then
  mkdir -p lab/.wheels
  if ! .venv/bin/pip download -q --disable-pip-version-check -d lab/.wheels py-spy 'qdrant-client>=1.9,<2' \
       >/var/tmp/octollm-wheels.log 2>&1; then
    tail -5 /var/tmp/octollm-wheels.log >&2; exit 3
  fi
  touch lab/.wheels/.complete
fi

log "docker build octollm/lab-runtime:$TAG"
DOCKER_BUILDKIT=0 docker build -q --network=host -t "octollm/lab-runtime:$TAG" -f lab/images/Dockerfile lab >/dev/null

# The execution environment's equivalent on the same base (ee/Containerfile.debian, issue 18): octollm/ee:$TAG, built
# only when its inputs changed (execution-environment.yml, ee/, collection/, the `ansible` package the dependency
# collections come from); the inputs' hash is the image's label. OCTOLLM_EE=0 skips it; OCTOLLM_EE_NO_CACHE=1 builds
# it without Docker's layer cache (to measure a cold build).
[ "${OCTOLLM_EE:-1}" = 0 ] && exit 0
EE_TAG="octollm/ee:$TAG"
PY=.venv/bin/python
ansible_version=$($PY -c 'import importlib.metadata as m; print(m.version("ansible"))')
ee_inputs=$( { find scripts/build-images.sh execution-environment.yml ee collection -type f ! -path '*/__pycache__/*' ! -path 'collection/dist/*' \
                 ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum; echo "ansible $ansible_version"; } \
             | sha256sum | cut -c1-16)
have=$(docker image inspect -f '{{index .Config.Labels "org.octollm.ee.inputs"}}' "$EE_TAG" 2>/dev/null || true)
if [ "$have" = "$ee_inputs" ] && [ -z "${OCTOLLM_EE_NO_CACHE:-}" ]; then
  log "$EE_TAG is current (inputs $ee_inputs)"
  exit 0
fi
ee_started=$(date +%s)
ctx=$(mktemp -d /var/tmp/octollm-ee-context.XXXXXX)
trap 'rm -rf "$ctx"' EXIT
cp ee/Containerfile.debian ee/requirements.txt "$ctx/"
# bindep's [platform:dpkg] selection of ee/bindep.txt, evaluated on Debian as the image's base is
.venv/bin/bindep -l newline -f ee/bindep.txt >"$ctx/bindep-debian.txt"
# ansible-core and ansible-runner as execution-environment.yml pins them
$PY - "$ctx/core.txt" <<'PYEOF'
import sys, yaml
deps = yaml.safe_load(open("execution-environment.yml"))["dependencies"]
open(sys.argv[1], "w").write("".join(deps[key]["package_pip"] + "\n" for key in ("ansible_core", "ansible_runner")))
PYEOF
# the wheels, downloaded with the host's pip settings (the build itself needs no index), for the base's Python
# (Debian 12's python3 is 3.11.2: environment markers such as redis's python_full_version < "3.11.3" apply to it)
wheels=${XDG_CACHE_HOME:-$HOME/.cache}/octollm/ee-wheels
mkdir -p "$wheels"
if ! .venv/bin/pip download -q --disable-pip-version-check --only-binary=:all: --python-version 3.11.2 -d "$wheels" \
     -r ee/requirements.txt -r "$ctx/core.txt" >/var/tmp/octollm-ee-wheels.log 2>&1; then
  tail -5 /var/tmp/octollm-ee-wheels.log >&2; exit 3
fi
# pip evaluates environment markers with the host's Python (3.11.7) even with --python-version: add what 3.11.2
# needs besides (e.g. async-timeout for redis), until nothing is missing
while missing=$($PY - "$wheels" <<'PYEOF'
import pathlib, sys, zipfile
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
env = {"python_full_version": "3.11.2", "python_version": "3.11", "extra": ""}
wheels = list(pathlib.Path(sys.argv[1]).glob("*.whl"))
have = {canonicalize_name(parse_wheel_filename(w.name)[0]) for w in wheels}
missing = set()
for wheel in wheels:
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        for line in archive.read(meta).decode().splitlines():
            if line.startswith("Requires-Dist:"):
                req = Requirement(line.split(":", 1)[1].strip())
                if req.marker and req.marker.evaluate(env) and canonicalize_name(req.name) not in have:
                    missing.add(f"{req.name}{req.specifier}")
print(" ".join(sorted(missing)))
PYEOF
) && [ -n "$missing" ]; do
  # shellcheck disable=SC2086
  .venv/bin/pip download -q --disable-pip-version-check --only-binary=:all: -d "$wheels" $missing \
    >>/var/tmp/octollm-ee-wheels.log 2>&1 || { tail -5 /var/tmp/octollm-ee-wheels.log >&2; exit 3; }
done
cp -r "$wheels" "$ctx/wheels"
# ee/requirements.yml's collection (octollm.remediation, built from collection/) and the collections its galaxy.yml
# depends on, from the `ansible` package's copies
mkdir -p "$ctx/collections/src"
PATH="$PWD/.venv/bin:$PATH" collection/build.sh "$ctx/collections" >/dev/null
src=$($PY -c 'import ansible_collections, os; print(list(ansible_collections.__path__)[0])')
for name in $($PY -c 'import yaml; print(" ".join(yaml.safe_load(open("collection/galaxy.yml"))["dependencies"]))') \
            community.library_inventory_filtering_v1; do
  mkdir -p "$ctx/collections/src/${name%%.*}"
  cp -r "$src/${name%%.*}/${name#*.}" "$ctx/collections/src/${name%%.*}/"
done
log "docker build $EE_TAG (inputs $ee_inputs)"
DOCKER_BUILDKIT=0 nice docker build -q ${OCTOLLM_EE_NO_CACHE:+--no-cache} --network=host \
  --label "org.octollm.ee.inputs=$ee_inputs" -t "$EE_TAG" -f "$ctx/Containerfile.debian" "$ctx" >/dev/null
log "built $EE_TAG in $(( $(date +%s) - ee_started )) s"
