#!/usr/bin/env bash
# The whole test suite: unit tests, integration tests against the test bed, molecule's default scenario,
# then ansible-lint, ruff, ansible-test sanity and units.
source "$(dirname "$0")/setup.sh"

testbed_dir=$(mktemp -d /tmp/qhub-prefect-testbed.XXXXXX)
stop_testbed() { "$PY" tests/testbed/testbed.py down --dir "$testbed_dir" >/dev/null 2>&1 || true; rm -rf "$testbed_dir"; }
trap stop_testbed EXIT

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
