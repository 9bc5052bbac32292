#!/usr/bin/env bash
# Installs what tests/testbed/images.py builds images with: mmdebstrap (a Debian root filesystem without
# Docker), the archive keyring for the suites it bootstraps, and GNU tar. Idempotent; silent when all is there.
set -euo pipefail
missing=()
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
[[ -e /usr/share/keyrings/debian-archive-keyring.gpg ]] || missing+=(debian-archive-keyring)
command -v chroot >/dev/null || missing+=(coreutils)
tar --version 2>/dev/null | grep -q 'GNU tar' || missing+=(tar)
if ((${#missing[@]})); then
  echo "install-image-tools: installing ${missing[*]}" >&2
  # Another apt run on the machine holds the lock for a while at most: wait for it rather than fail.
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
