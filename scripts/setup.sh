#!/usr/bin/env bash
# Sourced by the other scripts: installs what a fresh Debian machine lacks and sets the environment.
# After sourcing: REPO, PY (the tools venv python), PATH with the venv first, the collection linked in.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
say() { printf '\n== %s\n' "$*" >&2; }

if ! command -v openssl >/dev/null || ! python3 -m venv --help >/dev/null 2>&1; then
  say "installing openssl and python3-venv"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl python3-venv >/dev/null
fi
say "control plane binaries (built from Debian's kubernetes source once, then cached)"
KUBE_BIN_DIR=$(bash tests/testbed/install-control-plane.sh)
export KUBE_BIN_DIR
say "node packages (containerd, runc, CNI plugins, iptables, the image registry, skopeo)"
bash tests/testbed/install-node.sh
say "image build tools (mmdebstrap; tests/testbed/images.py builds the node's images with them)"
bash tests/testbed/install-image-tools.sh
say "virtual environments (.venv for Ansible and tests; a separate one for the Prefect server)"
# sed, not head: head exits after one line, and under pipefail the script's SIGPIPE on the second fails setup.
PY=$(bash tests/testbed/install-venvs.sh | sed -n 1p)
say "execution environment tools (podman; ansible-runner in .venv, next to ansible-builder)"
bash tests/testbed/install-ee-tools.sh
export PATH="$REPO/.venv/bin:$PATH"
mkdir -p .collections/ansible_collections/qhub
[[ -e .collections/ansible_collections/qhub/prefect ]] || ln -s ../../.. .collections/ansible_collections/qhub/prefect
# Bytecode for the collection's Python, as pip writes it for an installed package (ansible-core's collection
# loader would compile the controller-side module_utils from source on every run; plugin_utils/_bytecode_cache.py).
"$PY" -m compileall -q plugins
export ANSIBLE_CONFIG="$REPO/ansible.cfg"
