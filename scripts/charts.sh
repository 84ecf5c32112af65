#!/usr/bin/env bash
# The chart and workflow tools of `make charts-check`: Helm, the helm-unittest plugin, kubeconform and actionlint
# built from their Go modules, cached by version (zizmor and kubernetes-validate's offline JSON schemas come from PyPI
# with the dev dependencies).
#
#   scripts/charts.sh build   build what is missing (idempotent)
#   scripts/charts.sh paths   print NAME=path lines (HELM_PLUGINS: the plugin folder `helm unittest` needs)
#
# Binaries are cached under ~/.cache/flashsale/charts/<tool>/<version>/bin (FLASHSALE_CACHE_DIR moves the cache).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

HELM_VERSION="${HELM_VERSION:-v4.3.2}"
cache="${FLASHSALE_CACHE_DIR:-$HOME/.cache/flashsale}"
ACTIONLINT_VERSION="${ACTIONLINT_VERSION:-v1.7.12}"
KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.8.0}"
UNITTEST_VERSION="${UNITTEST_VERSION:-v1.1.2}"
helm_bin="$cache/charts/helm/$HELM_VERSION/bin"
actionlint_bin="$cache/charts/actionlint/$ACTIONLINT_VERSION/bin"
kubeconform_bin="$cache/charts/kubeconform/$KUBECONFORM_VERSION/bin"
unittest_bin="$cache/charts/helm-unittest/$UNITTEST_VERSION/bin"
plugins="$cache/charts/helm-unittest/$UNITTEST_VERSION/plugins"

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

# install_unittest_plugin: helm-unittest as `helm unittest`, the way `helm plugin install` lays it out (the module's
# plugin.yaml beside the binary under the name it gives for this platform), without its download hook.
install_unittest_plugin() {
  local dir="$plugins/unittest" manifest arch
  [ -f "$dir/plugin.yaml" ] && return 0
  command -v go >/dev/null || PATH="/usr/local/go/bin:$PATH"
  manifest=$(go_env go mod download -json "github.com/helm-unittest/helm-unittest@$UNITTEST_VERSION" |
    sed -En 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p')/plugin.yaml
  [ -f "$manifest" ] || die "no plugin.yaml in helm-unittest $UNITTEST_VERSION"
  arch=$(go_env go env GOARCH)
  rm -rf "$dir.new" && mkdir -p "$dir.new"
  sed '/^platformHooks:/,$d' "$manifest" >"$dir.new/plugin.yaml"
  cp "$unittest_bin/helm-unittest" "$dir.new/untt-linux-$arch"
  rm -rf "$dir" && mv "$dir.new" "$dir"
}

case "${1:-}" in
  build)
    build_cached helm "$helm_bin" helm.sh/helm/v4 "$HELM_VERSION" \
      "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" helm.sh/helm/v4/cmd/helm
    build_cached actionlint "$actionlint_bin" github.com/rhysd/actionlint "$ACTIONLINT_VERSION" \
      "-s -w -X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION" github.com/rhysd/actionlint/cmd/actionlint
    build_cached kubeconform "$kubeconform_bin" github.com/yannh/kubeconform "$KUBECONFORM_VERSION" \
      "-s -w -X main.version=$KUBECONFORM_VERSION" github.com/yannh/kubeconform/cmd/kubeconform
    build_cached helm-unittest "$unittest_bin" github.com/helm-unittest/helm-unittest "$UNITTEST_VERSION" \
      "-s -w -X github.com/helm-unittest/helm-unittest/internal/build.version=$UNITTEST_VERSION" \
      github.com/helm-unittest/helm-unittest/cmd/helm-unittest
    (
      exec 9>"$plugins.lock"
      flock 9
      install_unittest_plugin
    )
    ;;
  paths)
    echo "HELM=$helm_bin/helm"
    echo "ACTIONLINT=$actionlint_bin/actionlint"
    echo "KUBECONFORM=$kubeconform_bin/kubeconform"
    echo "HELM_PLUGINS=$plugins"
    ;;
  *)
    echo "usage: $0 build|paths" >&2
    exit 2
    ;;
esac
