#!/usr/bin/env bash
# The main job on the local default: test bed up, deploy.yml on examples/qhub-config.yml, a summary.
# The test bed keeps running afterwards (source .testbed/env.sh to use it);
# stop it with: bash scripts/demo.sh stop   (stops it, then checks that nothing of it is left)
source "$(dirname "$0")/setup.sh"
testbed_dir=${QHUB_PREFECT_TESTBED_DIR:-$REPO/.testbed}

if [[ ${1:-} == stop ]]; then
  say "test bed down"
  "$PY" tests/testbed/testbed.py down --dir "$testbed_dir"
  say "anything of it left?"
  "$PY" tests/testbed/testbed.py leftovers --dir "$testbed_dir" && echo "nothing left"
  exit
fi

if ! "$PY" tests/testbed/testbed.py status --dir "$testbed_dir" >/dev/null 2>&1; then
  say "test bed up in $testbed_dir"
  "$PY" tests/testbed/testbed.py up --dir "$testbed_dir" >/dev/null
fi
# shellcheck disable=SC1091
source "$testbed_dir/env.sh"
# Demo credentials; in real use these come from your CI secrets or AWX credentials.
export QHUB_SECRET_PREFECT_TOKEN=${QHUB_SECRET_PREFECT_TOKEN:-demo-token}
export DATABASE_PASSWORD=${DATABASE_PASSWORD:-demo-database-password}

say "ansible-playbook playbooks/deploy.yml -e qhub_config_file=examples/qhub-config.yml (waits for the pod Ready and the worker ONLINE)"
ansible-playbook playbooks/deploy.yml -e qhub_config_file=examples/qhub-config.yml -e qhub_prefect_wait_for_worker=true

say "what is there now"
"$PY" tests/testbed/summary.py --dir "$testbed_dir" --config examples/qhub-config.yml
cat <<MSG

The test bed is still running: source $testbed_dir/env.sh to use it,
and stop it with: bash scripts/demo.sh stop
MSG
