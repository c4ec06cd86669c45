#!/usr/bin/env bash
# Build the octollm.remediation artifact. ansible-galaxy skips symlinks and roles/ + playbooks/ live at
# the top of the repository, so copy (not link) everything into a temporary tree and build there.
#   usage: collection/build.sh [OUTPUT_DIR]      (default: <repo>/collection/dist)
# Prints the absolute path of the artifact on stdout (logs go to stderr).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
out=${1:-$here/dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tree=$tmp/octollm/remediation
mkdir -p "$tree"
# -L: dereference any symlink so that the artifact holds real files.
cp -RL "$here/galaxy.yml" "$here/README.md" "$here/meta" "$here/plugins" "$here/extensions" "$tree/"
cp -RL "$repo/roles" "$repo/playbooks" "$tree/"
[ -f "$repo/LICENSE" ] && cp "$repo/LICENSE" "$tree/"
find "$tree" \( -name __pycache__ -o -name '*.pyc' -o -name .pytest_cache \) -prune -exec rm -rf {} + 2>/dev/null || true
ansible-galaxy collection build --force --output-path "$out" "$tree" >&2
version=$(sed -n 's/^version: *//p' "$here/galaxy.yml" | tr -d '"'"'"' ')
artifact=$out/octollm-remediation-$version.tar.gz
[ -f "$artifact" ] || { echo "build: $artifact was not produced" >&2; exit 1; }
echo "$artifact"
