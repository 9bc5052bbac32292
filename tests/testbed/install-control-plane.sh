#!/usr/bin/env bash
# Installs the local Kubernetes control plane the test bed runs: etcd from Debian,
# kube-apiserver and kube-controller-manager built from Debian's kubernetes source
# package (no prebuilt binaries can be downloaded on these machines).
# Binaries are cached; KUBEBUILDER_ASSETS (envtest convention) short-cuts the build.
# Prints the directory holding etcd, kube-apiserver and kube-controller-manager.
set -euo pipefail

cache_root=${QHUB_PREFECT_CACHE:-$HOME/.cache/qhub-prefect}
bin_dir=$cache_root/kubernetes/bin
log() { echo "install-control-plane: $*" >&2; }

if [[ -n ${KUBEBUILDER_ASSETS:-} && -x $KUBEBUILDER_ASSETS/kube-apiserver && -x $KUBEBUILDER_ASSETS/etcd ]]; then
  log "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }

apt_updated=
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  ((${#missing[@]})) || return 0
  if [[ -z $apt_updated ]]; then as_root apt-get update -qq >&2; apt_updated=1; fi
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

apt_install etcd-server
mkdir -p "$bin_dir"
ln -sf "$(command -v etcd || echo /usr/bin/etcd)" "$bin_dir/etcd"

# The control plane, plus the node (scheduler, kubelet, kube-proxy) the test bed runs pods on.
commands=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
have_all=1
for cmd in "${commands[@]}"; do [[ -x $bin_dir/$cmd ]] || have_all=; done
if [[ -n $have_all ]]; then
  echo "$bin_dir"
  exit 0
fi

apt_install golang-go rsync dpkg-dev make

# A deb-src twin of the machine's own Debian sources, so no mirror is hard-coded here.
src_list=/etc/apt/sources.list.d/qhub-prefect-deb-src.sources
if [[ ! -f $src_list ]] && ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    sed 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources | as_root tee "$src_list" >/dev/null
  else
    grep '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' | as_root tee /etc/apt/sources.list.d/qhub-prefect-deb-src.list >/dev/null
  fi
  as_root apt-get update -qq >&2
fi

build_root=$cache_root/kubernetes/build
mkdir -p "$build_root"
cd "$build_root"
if ! ls kubernetes_*.orig.tar.* >/dev/null 2>&1; then
  log "downloading Debian's kubernetes source package"
  apt-get source --download-only kubernetes >&2
fi
tree=$build_root/tree
if [[ ! -f $tree/Makefile ]]; then
  rm -rf "$tree" && mkdir -p "$tree"
  tar -xf "$(ls kubernetes_*.orig.tar.* | head -n1)" -C "$tree" --strip-components=1
fi
gopath=$tree/.go
mkdir -p "$gopath/src/k8s.io"
ln -sfn "$tree" "$gopath/src/k8s.io/kubernetes"
# A make run without rsync leaves a zero-byte generator behind that breaks every later make.
find "$tree/_output" -maxdepth 3 -type f -size 0 -delete 2>/dev/null || true

missing=()
for cmd in "${commands[@]}"; do [[ -x $bin_dir/$cmd ]] || missing+=("$cmd"); done
if ((${#missing[@]})); then
  log "building ${missing[*]} (several minutes)"
  what=$(printf 'cmd/%s ' "${missing[@]}")
  (cd "$gopath/src/k8s.io/kubernetes" && env GOPATH="$gopath" GO111MODULE=off CGO_ENABLED=0 GOFLAGS= make WHAT="${what% }" >&2) || {
    log "build of ${missing[*]} failed"; exit 1; }
  for cmd in "${missing[@]}"; do
    built=$(find "$tree/_output" -type f -name "$cmd" -perm -u+x | head -n1)
    [[ -n $built ]] || { log "no $cmd binary after the build"; exit 1; }
    install -m 0755 "$built" "$bin_dir/$cmd"
  done
fi
echo "$bin_dir"
