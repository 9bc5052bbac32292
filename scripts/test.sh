#!/usr/bin/env bash
# The whole test suite: unit tests, integration tests against the test bed, molecule's default scenario,
# then ansible-lint, ruff, ansible-test sanity and units. The test bed has a node (pods run) unless
# QHUB_PREFECT_TESTBED_NODE=0; after its teardown a check fails the run if anything of it is left.
source "$(dirname "$0")/setup.sh"

testbed_dir=$(mktemp -d /tmp/qhub-prefect-testbed.XXXXXX)
finish() {
  local status=$?
  "$PY" tests/testbed/testbed.py down --dir "$testbed_dir" >/dev/null 2>&1 || true
  rm -rf "$testbed_dir"
  if ! "$PY" tests/testbed/testbed.py leftovers --dir "$testbed_dir"; then
    say "the test bed left the above behind"
    status=1
  fi
  exit "$status"
}
trap finish EXIT

say "test bed up"
"$PY" tests/testbed/testbed.py up --dir "$testbed_dir"
export QHUB_PREFECT_TESTBED_DIR=$testbed_dir

say "pytest: unit and integration"
"$PY" -m pytest tests/unit tests/integration -q -p no:cacheprovider

say "molecule test (default scenario)"
molecule test -s default

say "ansible-lint (production profile) and ruff"
bash tests/lint.sh

say "ansible-test sanity (no ignore file) and units"
bash tests/sanity.sh

say "done"
