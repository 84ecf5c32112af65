#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, from parts its package registries carry: the envtest
# control plane (etcd, kube-apiserver) plus kube-controller-manager, kube-scheduler, kubelet and kube-proxy built
# from the same Kubernetes Go module, containerd 2.x from its Go module, Debian's runc, CNI plugins and buildah.
#
#   scripts/cluster.sh build   build and install every part, cached by version (idempotent)
#   scripts/cluster.sh up      start the node (builds what is missing), print KUBECONFIG=<path>
#   scripts/cluster.sh down    stop it, put back what it changed on the host, remove the state folder
#   scripts/cluster.sh env     print export lines for the running node
#   scripts/cluster.sh image   build the platform's image from the Dockerfile (cached by its sources' hash), load
#                              it into the running node's containerd, print its reference
#   scripts/cluster.sh paths   print the path of the tools the node's tests use (PROMETHEUS=...)
#
# Binaries are cached under ~/.cache/flashsale (FLASHSALE_CACHE_DIR moves the cache): the node's Kubernetes
# components in k8s/<version>/node-bin, containerd in containerd/<version>/bin, images in cluster/images. The state
# folder is var/cluster unless CLUSTER_DIR says otherwise.
set -euo pipefail
shopt -s inherit_errexit # a failing step inside $(...) fails the script too
cd "$(dirname "$0")/.."
repo=$PWD

K8S_VERSION="${K8S_VERSION:-v1.36.3}"  # the envtest control plane's version (scripts/envtest.sh)
CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.3.7}"  # kubelet 1.36 needs containerd 2.0 or later; Debian has 1.6
cache="${FLASHSALE_CACHE_DIR:-$HOME/.cache/flashsale}"
node_bin="$cache/k8s/$K8S_VERSION/node-bin"
k8s_bin="$cache/k8s/$K8S_VERSION/bin" # kube-apiserver and kubectl, built by scripts/envtest.sh
state="${CLUSTER_DIR:-var/cluster}"
case "$state" in /*) ;; *) state="$repo/$state" ;; esac
containerd_bin="$cache/containerd/$CONTAINERD_VERSION/bin"
NODE_COMPONENTS=(kubelet kube-proxy kube-scheduler kube-controller-manager)
CONTAINERD_TOOLS=(containerd ctr containerd-shim-runc-v2)
COREDNS_VERSION="${COREDNS_VERSION:-v1.15.0}"
coredns_bin="$cache/coredns/$COREDNS_VERSION/bin"
COREDNS_IMAGE="localhost/flashsale/coredns:$COREDNS_VERSION"
# Debian's Prometheus is built without Kubernetes service discovery; the node's tests scrape pods through it
PROMETHEUS_MODULE_VERSION="${PROMETHEUS_MODULE_VERSION:-v0.316.0}" # Prometheus 3.16.0 (its module's v0.3XX tags)
prometheus_bin="$cache/prometheus/$PROMETHEUS_MODULE_VERSION/bin"
APT_PACKAGES=(runc containernetworking-plugins buildah iptables conntrack debootstrap gcc libc6-dev)
images="$cache/cluster/images"
SANDBOX_IMAGE=localhost/flashsale/pause:1  # what containerd.toml pins as the pod sandbox

log() { echo "cluster: $*" >&2; }
die() { log "$*"; exit 1; }

# shellcheck source=lib/go_tools.sh
source "$repo/scripts/lib/go_tools.sh"
# shellcheck source=lib/processes.sh
source "$repo/scripts/lib/processes.sh"
# shellcheck source=lib/cluster_images.sh
source "$repo/scripts/lib/cluster_images.sh"
# shellcheck source=lib/cluster_node.sh
source "$repo/scripts/lib/cluster_node.sh"

all_built() {  # dir name...
  local dir=$1 name
  shift
  for name in "$@"; do [ -x "$dir/$name" ] || return 1; done
}

# build_node: the node's Kubernetes components from k8s.io/kubernetes, its staging modules at v0.Y.Z, versioned
# like the envtest control plane's binaries.
build_node() {
  if all_built "$node_bin" "${NODE_COMPONENTS[@]}"; then
    log "${NODE_COMPONENTS[*]} $K8S_VERSION cached in $node_bin"
    return 0
  fi
  local minor=${K8S_VERSION#v1.} ldflags="-s -w" p pkgs=()
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=${minor%%.*}"
    ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  for p in "${NODE_COMPONENTS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$p"); done
  go_build_pinned "$node_bin" k8s.io/kubernetes "$K8S_VERSION" \
    '^[[:space:]]*(k8s\.io/[^[:space:]]+) => \./staging/.*' "v0.$minor" "$ldflags" "${pkgs[@]}"
}

# build_containerd: containerd, ctr and the runc shim (no_btrfs: the btrfs snapshotter needs cgo headers).
build_containerd() {
  if all_built "$containerd_bin" "${CONTAINERD_TOOLS[@]}"; then
    log "containerd $CONTAINERD_VERSION cached in $containerd_bin"
    return 0
  fi
  local module=github.com/containerd/containerd/v2 ldflags="-s -w" pkgs=() t
  ldflags+=" -X $module/version.Version=$CONTAINERD_VERSION -X $module/version.Package=$module"
  for t in "${CONTAINERD_TOOLS[@]}"; do pkgs+=("$module/cmd/$t"); done
  GO_BUILD_TAGS=no_btrfs go_build_pinned "$containerd_bin" "$module" "$CONTAINERD_VERSION" "" "" "$ldflags" "${pkgs[@]}"
}

# build_coredns: the cluster's DNS from its Go module (the image is built from the binary by build_coredns_image).
build_coredns() {
  if all_built "$coredns_bin" coredns; then
    log "coredns $COREDNS_VERSION cached in $coredns_bin"
    return 0
  fi
  go_build_pinned "$coredns_bin" github.com/coredns/coredns "$COREDNS_VERSION" "" "" "-s -w" github.com/coredns/coredns
}

# build_prometheus: Prometheus with every service discovery, Kubernetes' among them, from its Go module.
build_prometheus() {
  if all_built "$prometheus_bin" prometheus; then
    log "prometheus $PROMETHEUS_MODULE_VERSION cached in $prometheus_bin"
    return 0
  fi
  local minor=${PROMETHEUS_MODULE_VERSION#v0.} version
  version="3.$((10#${minor%%.*} - 300)).${minor#*.}"
  go_build_pinned "$prometheus_bin" github.com/prometheus/prometheus "$PROMETHEUS_MODULE_VERSION" "" "" \
    "-s -w -X github.com/prometheus/common/version.Version=$version" github.com/prometheus/prometheus/cmd/prometheus
}

# install_packages: Debian's runc, CNI plugins (bridge, host-local, loopback, portmap), buildah and what the node's
# networking and the base image need, when missing.
install_packages() {
  local missing=() pkg
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    log "${APT_PACKAGES[*]} installed"
    return 0
  fi
  log "installing ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build() {
  scripts/envtest.sh build
  build_node
  build_containerd
  build_coredns
  build_prometheus
  install_packages
  build_sandbox_image
  build_coredns_image
  "$node_bin/kubelet" --version
  "$containerd_bin/containerd" --version
  "$prometheus_bin/prometheus" --version | head -n 1
}

# platform_image: the Dockerfile's image, built when its sources changed, loaded into the node when it runs.
platform_image() {
  install_packages >&2
  local ref
  ref=$(build_platform_image)
  if [ -S "$state/containerd/containerd.sock" ]; then
    ctr_k8s images import "$images/flashsale-${ref##*:src-}.tar" >/dev/null || die "could not load $ref into the node"
    log "loaded $ref into the node's containerd (namespace k8s.io)"
  fi
  echo "$ref"
}

case "${1:-}" in
  build) build ;;
  image) platform_image ;;
  paths) echo "PROMETHEUS=$prometheus_bin/prometheus" ;;
  up) node_up ;;
  down) node_down ;;
  env) node_env ;;
  *) echo "usage: $0 build|up|down|env|image|paths" >&2; exit 2 ;;
esac
