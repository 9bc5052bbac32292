#!/usr/bin/env bash
# ansible-test sanity and units without Docker and without ci-files.testing.ansible.com.
#
#   bash tests/sanity.sh            # sanity, then units
#   bash tests/sanity.sh sanity     # only sanity
#   bash tests/sanity.sh units      # only units
#
# ansible-test wants the collection at .../ansible_collections/qhub/prefect and skips files git
# ignores, so the git-tracked and untracked-but-not-ignored files are copied to a fresh tree under
# $QHUB_SANITY_DIR (/tmp/qhub-sanity by default) and the tests run there. Each test gets its own
# virtual environment (--venv), whose packages pip takes from the configured package index.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV_BIN=${QHUB_SANITY_VENV_BIN:-$REPO/.venv/bin}
WORK=${QHUB_SANITY_DIR:-/tmp/qhub-sanity}
DEST=$WORK/ansible_collections/qhub/prefect
PYTHON_VERSION=3.11
what=${1:-all}
say() { printf '\n== %s\n' "$*" >&2; }

# ansible-test bootstraps pip into each new venv with a get-pip script it downloads from
# ci-files.testing.ansible.com, unless it finds one in its cache. The stand-in below does the same job
# with the pip that ships with Python: ensurepip, then `pip install <the arguments it was given>`
# (pip==<version>), dropping --no-setuptools/--no-wheel, which only get-pip understands.
# ansible-test runs it through its quiet_pip.py (GET_PIP=<this file>, runpy as __main__), so
# sys.executable is the new venv's python. The file name follows the pip version ansible-test pins
# (ansible_test/_internal/python_requirements.py, get_venv_packages: pip 24.2 in ansible-core 2.19).
PIP_VERSION=$("$VENV_BIN/python" - <<'PY'
import re, pathlib, ansible_test
src = pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
print(re.search(r"pip='([0-9.]+)'", src.read_text()).group(1))
PY
)
GET_PIP=$HOME/.ansible/test/cache/get_pip_${PIP_VERSION//./_}.py
if [[ ! -f $GET_PIP ]]; then
  say "writing the offline get-pip stand-in $GET_PIP"
  mkdir -p "$(dirname "$GET_PIP")"
  cat >"$GET_PIP" <<'PY'
"""Stand-in for get-pip.py (written by qhub.prefect tests/sanity.sh): ensurepip, then pip install."""
import subprocess
import sys

DROP = {"--no-setuptools", "--no-wheel"}

subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
args = [arg for arg in sys.argv[1:] if arg not in DROP]
if any(not arg.startswith("-") for arg in args):
    subprocess.check_call([sys.executable, "-m", "pip", "install"] + args)
PY
fi

say "copying the collection to $DEST"
rm -rf "$WORK"
mkdir -p "$DEST"
(cd "$REPO" && git ls-files -co --exclude-standard -z | while IFS= read -r -d '' file; do
  # A path git lists may already be gone (deleted in the work tree, not yet committed).
  [[ -e $file || -L $file ]] && printf '%s\0' "$file"
done | xargs -0 -r cp --parents -P -t "$DEST")
# No .git in the copy: ansible-test walks the tree, which holds exactly the files git would list.
cd "$DEST"

export PATH="$VENV_BIN:$PATH"
status=0

if [[ $what == all || $what == sanity ]]; then
  # Every sanity test ansible-core 2.19 has for a collection runs: none needs Docker or the network
  # beyond pip, whose requirements come from the package index configured for pip (pip.conf).
  # yamllint runs on its own, without tests/data/bad-configs/: those files are broken on purpose
  # (a syntax error, a tab, duplicate keys) for the bad-config tests. Everything else checks them too.
  say "ansible-test sanity --venv --python $PYTHON_VERSION (all tests but yamllint)"
  ansible-test sanity --venv --python "$PYTHON_VERSION" --color no --skip-test yamllint || status=1
  say "ansible-test sanity --test yamllint (without the deliberately broken tests/data/bad-configs/)"
  ansible-test sanity --venv --python "$PYTHON_VERSION" --color no --test yamllint \
    --exclude tests/data/bad-configs/ || status=1
fi

if [[ $what == all || $what == units ]]; then
  # tests/unit/**/test_*.py import the collection as ansible_collections.qhub.prefect...; the units
  # venv gets tests/unit/requirements.txt if present, and the collection's own requirements.
  say "ansible-test units --venv --python $PYTHON_VERSION"
  ansible-test units --venv --python "$PYTHON_VERSION" --color no || status=1
fi

exit $status
