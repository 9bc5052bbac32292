#!/usr/bin/env bash
# Installs what the test bed's node runs besides the Kubernetes binaries (install-control-plane.sh builds
# kube-scheduler, kubelet and kube-proxy): containerd and runc, the CNI plugins, iptables and conntrack for
# kube-proxy, the image registry, htpasswd for its credentials, skopeo to push images into it, and gcc for
# the pause image. Debian packages only; quiet and quick when everything is there.
set -euo pipefail
log() { echo "install-node: $*" >&2; }
as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }

packages=(containerd runc containernetworking-plugins iptables conntrack docker-registry apache2-utils skopeo gcc libc6-dev)
missing=()
for pkg in "${packages[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  as_root apt-get update -qq -o DPkg::Lock::Timeout=600 >&2
  # policy-rc.d keeps the packages' own services (containerd, docker-registry) from starting: the test
  # bed runs its own instances with their own configuration, and nothing of the machine's.
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod 0755 "$policy"
    trap 'as_root rm -f "$policy"' EXIT
  fi
  apt_log=$(mktemp)
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    -o DPkg::Lock::Timeout=600 "${missing[@]}" >"$apt_log" 2>&1 || { cat "$apt_log" >&2; rm -f "$apt_log"; exit 1; }
  rm -f "$apt_log"
fi
for tool in containerd ctr runc iptables conntrack docker-registry htpasswd skopeo gcc; do
  command -v "$tool" >/dev/null || { log "$tool is missing after the install"; exit 1; }
done
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] || {
  log "the CNI plugins are not in /usr/lib/cni"; exit 1; }
