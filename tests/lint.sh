#!/usr/bin/env bash
# ansible-lint (production profile, .ansible-lint) and ruff (ruff.toml) over the collection.
#
#   bash tests/lint.sh
#
# ansible-lint installs the collection into a .ansible/ cache inside the project it lints, so it runs
# on a copy of the git-tracked and untracked-but-not-ignored files under $QHUB_LINT_DIR
# (/tmp/qhub-lint by default), which leaves the work tree untouched. Paths in its report are
# relative to the collection root either way. ruff runs in place (it skips git-ignored files).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV_BIN=${QHUB_LINT_VENV_BIN:-$REPO/.venv/bin}
WORK=${QHUB_LINT_DIR:-/tmp/qhub-lint}
DEST=$WORK/ansible_collections/qhub/prefect
say() { printf '\n== %s\n' "$*" >&2; }
export PATH="$VENV_BIN:$PATH"
status=0

say "copying the collection to $DEST"
rm -rf "$WORK"
mkdir -p "$DEST"
(cd "$REPO" && git ls-files -co --exclude-standard -z | while IFS= read -r -d '' file; do
  [[ -e $file || -L $file ]] && printf '%s\0' "$file"
done | xargs -0 -r cp --parents -P -t "$DEST")

say "ansible-lint --profile production"
# The copy sits at $WORK/ansible_collections/qhub/prefect, so qhub.prefect resolves to it.
(cd "$DEST" && ANSIBLE_CONFIG="$DEST/ansible.cfg" ANSIBLE_COLLECTIONS_PATH="$WORK" \
  ansible-lint --profile production --nocolor) || status=1

say "ruff check"
(cd "$REPO" && ruff check --no-cache --output-format concise --config ruff.toml .) || status=1

exit $status
