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
