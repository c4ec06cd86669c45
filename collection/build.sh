#!/usr/bin/env bash
# Build the octollm.remediation artifact from collection/, the collection's root (roles/ and playbooks/ live in it;
# the top-level roles/ and playbooks/ are links to them). The same tree is what `ansible-galaxy collection install
# "git+<repo>#/collection/"` (an AWX project sync) builds, so both ways yield the same files; galaxy.yml's
# build_ignore leaves out the development files.
#   usage: collection/build.sh [OUTPUT_DIR]      (default: <repo>/collection/dist)
# Prints the absolute path of the artifact on stdout (logs go to stderr).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)
# ansible-galaxy would package a symlink as a link: the collection tree holds none.
links=$(find "$here" -path "$here/dist" -prune -o -type l -print)
[ -z "$links" ] || { echo "build: symlinks in the collection tree: $links" >&2; exit 1; }
ansible-galaxy collection build --force --output-path "$out" "$here" >&2
version=$(sed -n 's/^version: *//p' "$here/galaxy.yml" | tr -d '"'"'"' ')
artifact=$out/octollm-remediation-$version.tar.gz
[ -f "$artifact" ] || { echo "build: $artifact was not produced" >&2; exit 1; }
echo "$artifact"
