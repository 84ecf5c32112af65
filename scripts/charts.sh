#!/usr/bin/env bash
# The chart tools of `make charts-check`: Helm built from its Go module, cached by version.
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
helm_bin="$cache/charts/helm/$HELM_VERSION/bin"

log() { echo "charts: $*" >&2; }
die() { log "$*"; exit 1; }

# shellcheck source=lib/go_tools.sh
source "$repo/scripts/lib/go_tools.sh"

build_helm() {
  if [ -x "$helm_bin/helm" ]; then
    log "helm $HELM_VERSION cached in $helm_bin"
    return 0
  fi
  mkdir -p "$(dirname "$helm_bin")"
  (
    exec 9>"$helm_bin.lock"
    flock 9  # two test processes building at once build once
    [ -x "$helm_bin/helm" ] && exit 0
    go_build_pinned "$helm_bin" helm.sh/helm/v4 "$HELM_VERSION" "" "" \
      "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" helm.sh/helm/v4/cmd/helm
  )
}

case "${1:-}" in
  build)
    build_helm
    ;;
  paths)
    echo "HELM=$helm_bin/helm"
    ;;
  *)
    echo "usage: $0 build|paths" >&2
    exit 2
    ;;
esac
