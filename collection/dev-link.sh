#!/usr/bin/env bash
# Link octollm.remediation into a development collections path, made of symlinks so that edits to
# collection/ (its roles/ and playbooks/ included; the top-level roles/ and playbooks/ link to them) take effect at
# once (no build needed at run time).
#   usage: collection/dev-link.sh [COLLECTIONS_DIR]     (default: <repo>/.collections)
# Creates COLLECTIONS_DIR/ansible_collections/octollm/remediation/{galaxy.yml,plugins,meta,README.md,extensions,roles,playbooks}.
# Idempotent; replaces stale links, refuses to touch a real (non-link) file in the way.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
dest=${1:-$repo/.collections}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
target=$dest/ansible_collections/octollm/remediation
mkdir -p "$target"
link() {  # link SOURCE NAME
  local src=$1 name=$2
  if [ -e "$target/$name" ] && [ ! -L "$target/$name" ]; then
    echo "dev-link: $target/$name exists and is not a symlink (an installed copy?); remove it first" >&2
    exit 1
  fi
  ln -sfn "$src" "$target/$name"
}
for item in galaxy.yml plugins meta README.md extensions roles playbooks; do
  link "$here/$item" "$item"
done
echo "$target"
