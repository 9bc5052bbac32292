#!/usr/bin/env bash
# Creates the two virtual environments the project runs in:
#   .venv            ansible-core, the kubernetes client and the test tools (the controller side);
#   prefect venv     prefect 3 + prefect-kubernetes, for the test bed's server and worker only
#                    (prefect's pins conflict with the kubernetes client; no module imports it).
# Prints nothing on stdout but the two interpreter paths, one a line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache_root=${QHUB_PREFECT_CACHE:-$HOME/.cache/qhub-prefect}
log() { echo "install-venvs: $*" >&2; }
python=${PYTHON:-python3}

tools_venv=${QHUB_PREFECT_VENV:-$repo/.venv}
stamp=$tools_venv/.requirements.sha
want=$(cat "$repo/requirements.txt" "$repo/test-requirements.txt" | sha256sum | cut -d' ' -f1)
if [[ ! -x $tools_venv/bin/python || $(cat "$stamp" 2>/dev/null) != "$want" ]]; then
  log "creating $tools_venv"
  "$python" -m venv "$tools_venv"
  "$tools_venv/bin/pip" install -q --disable-pip-version-check -r "$repo/requirements.txt" -r "$repo/test-requirements.txt" >&2
  echo "$want" > "$stamp"
fi

prefect_venv=${QHUB_PREFECT_SERVER_VENV:-$cache_root/prefect-venv}
pstamp=$prefect_venv/.requirements.sha
pwant=$(sha256sum "$here/prefect-requirements.txt" | cut -d' ' -f1)
if [[ ! -x $prefect_venv/bin/prefect || $(cat "$pstamp" 2>/dev/null) != "$pwant" ]]; then
  log "creating $prefect_venv"
  "$python" -m venv "$prefect_venv"
  "$prefect_venv/bin/pip" install -q --disable-pip-version-check -r "$here/prefect-requirements.txt" >&2
  echo "$pwant" > "$pstamp"
fi
echo "$tools_venv/bin/python"
echo "$prefect_venv/bin/python"
