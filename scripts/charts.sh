#!/usr/bin/env bash
# The chart and workflow tools of `make charts-check`: Helm, kubeconform and actionlint built from their Go modules,
# cached by version (zizmor and kubernetes-validate's offline JSON schemas come from PyPI with the dev dependencies).
#
#   scripts/charts.sh build   build what is missing (idempotent)
#   scripts/charts.sh paths   print NAME=path lines
#
# Binaries are cached under ~/.cache/flashsale/charts/<tool>/<version>/bin (FLASHSALE_CACHE_DIR moves the cache).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

HELM_VERSION="${HELM_VERSION:-v4.3.2}"
cache="${FLASHSALE_CACHE_DIR:-$HOME/.cache/flashsale}"
ACTIONLINT_VERSION="${ACTIONLINT_VERSION:-v1.7.12}"
KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.8.0}"
helm_bin="$cache/charts/helm/$HELM_VERSION/bin"
actionlint_bin="$cache/charts/actionlint/$ACTIONLINT_VERSION/bin"
kubeconform_bin="$cache/charts/kubeconform/$KUBECONFORM_VERSION/bin"

log() { echo "charts: $*" >&2; }
die() { log "$*"; exit 1; }

# shellcheck source=lib/go_tools.sh
source "$repo/scripts/lib/go_tools.sh"

# build_cached NAME BIN MODULE VERSION LDFLAGS PACKAGE: BIN/NAME built once (two test processes at once build once).
build_cached() {
  local name=$1 bin=$2 module=$3 version=$4 ldflags=$5 package=$6
  if [ -x "$bin/$name" ]; then
    log "$name $version cached in $bin"
    return 0
  fi
  mkdir -p "$(dirname "$bin")"
  (
    exec 9>"$bin.lock"
    flock 9
    [ -x "$bin/$name" ] && exit 0
    go_build_pinned "$bin" "$module" "$version" "" "" "$ldflags" "$package"
  )
}

case "${1:-}" in
  build)
    build_cached helm "$helm_bin" helm.sh/helm/v4 "$HELM_VERSION" \
      "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" helm.sh/helm/v4/cmd/helm
    build_cached actionlint "$actionlint_bin" github.com/rhysd/actionlint "$ACTIONLINT_VERSION" \
      "-s -w -X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION" github.com/rhysd/actionlint/cmd/actionlint
    build_cached kubeconform "$kubeconform_bin" github.com/yannh/kubeconform "$KUBECONFORM_VERSION" \
      "-s -w -X main.version=$KUBECONFORM_VERSION" github.com/yannh/kubeconform/cmd/kubeconform
    ;;
  paths)
    echo "HELM=$helm_bin/helm"
    echo "ACTIONLINT=$actionlint_bin/actionlint"
    echo "KUBECONFORM=$kubeconform_bin/kubeconform"
    ;;
  *)
    echo "usage: $0 build|paths" >&2
    exit 2
    ;;
esac
