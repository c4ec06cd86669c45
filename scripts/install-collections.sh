#!/usr/bin/env bash
# Install the collections of requirements.yml into .collections: from Galaxy when it answers, otherwise
# offline from the copies inside the PyPI `ansible` package. Then link octollm.remediation for development.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.collections
export PATH="$PWD/.venv/bin:$PATH"
have() { [ -f "$DEST/ansible_collections/$1/MANIFEST.json" ]; }
if have kubernetes/core && have community/docker && have community/postgresql && have community/general \
   && have ansible/posix && have community/library_inventory_filtering_v1; then
  :
elif curl -fsS -m 5 -o /dev/null https://galaxy.ansible.com/api/ 2>/dev/null; then
  echo "[collections] installing from Galaxy" >&2
  ansible-galaxy collection install -r requirements.yml -p "$DEST" >/dev/null
else
  echo "[collections] Galaxy unreachable: installing offline from the ansible package" >&2
  src=$(python -c 'import ansible_collections, os; print(os.path.dirname(ansible_collections.__file__))' 2>/dev/null \
        || python -c 'import sys; print([p for p in sys.path if p.endswith("site-packages")][0] + "/ansible_collections")')
  ansible-galaxy collection install --offline --force -p "$DEST" \
    "$src/community/library_inventory_filtering_v1" "$src/kubernetes/core" "$src/community/docker" \
    "$src/community/postgresql" "$src/community/general" "$src/ansible/posix" >/dev/null
fi
collection/dev-link.sh "$DEST"
