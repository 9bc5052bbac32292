#!/usr/bin/env bash
# Installs what tests/testbed/ee.py builds and runs the execution environment (EE) with: podman (Debian's,
# which brings buildah, conmon, runc and fuse-overlayfs), and ansible-runner in the tools venv, the same
# minor release the EE's definition (meta/ee/execution-environment.yml) installs, so that the host's
# `ansible-runner transmit`/`process` and the EE's `ansible-runner worker` speak one stream format.
# ansible-builder comes with test-requirements.txt. Idempotent; silent when all is there.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
venv=${QHUB_PREFECT_VENV:-$repo/.venv}
runner_requirement='ansible-runner>=2.4,<2.5'

if ! command -v podman >/dev/null; then
  echo "install-ee-tools: installing podman" >&2
  # Another apt run on the machine holds the lock for a while at most: wait for it rather than fail.
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq podman >/dev/null
fi

if [[ ! -x $venv/bin/ansible-runner ]]; then
  echo "install-ee-tools: installing $runner_requirement into $venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "$runner_requirement" >&2
fi
