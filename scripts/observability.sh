#!/usr/bin/env bash
# The real observability backends the tests and `flashsale up --observe` run: Prometheus (and promtool) from
# Debian's package, Jaeger v2 built from its Go module. Both are started by flashsale_tools.platform, not here.
#
#   scripts/observability.sh build   install Prometheus if missing, build Jaeger once (cached by version)
#   scripts/observability.sh paths   print PROMETHEUS=, PROMTOOL= and JAEGER= lines for the installed binaries
#
# Jaeger is cached under ~/.cache/flashsale/jaeger/<version>/bin (FLASHSALE_CACHE_DIR moves the cache).
# Every subcommand is idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

JAEGER_VERSION="${JAEGER_VERSION:-v1.76.0}"  # Jaeger v2 releases are tagged on the v1 module path
cache="${FLASHSALE_CACHE_DIR:-$HOME/.cache/flashsale}"
jaeger_bin="$cache/jaeger/$JAEGER_VERSION/bin"

log() { echo "observability: $*" >&2; }
die() { log "$*"; exit 1; }

# shellcheck source=lib/go_tools.sh
source "$repo/scripts/lib/go_tools.sh"

install_prometheus() {
  if [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ]; then
    log "$(/usr/bin/prometheus --version 2>&1 | head -n 1)"
    return 0
  fi
  log "installing Debian's prometheus (with promtool)"
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  # The package's service is not wanted: the platform runs its own Prometheus on a loopback port.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
}

build_jaeger() {
  if [ -x "$jaeger_bin/jaeger" ]; then
    log "jaeger $JAEGER_VERSION cached in $jaeger_bin"
    return 0
  fi
  go_build_pinned "$jaeger_bin" github.com/jaegertracing/jaeger "$JAEGER_VERSION" "" "" "-s -w" \
    github.com/jaegertracing/jaeger/cmd/jaeger
}

case "${1:-}" in
  build)
    install_prometheus
    build_jaeger
    ;;
  paths)
    echo "PROMETHEUS=/usr/bin/prometheus"
    echo "PROMTOOL=/usr/bin/promtool"
    echo "JAEGER=$jaeger_bin/jaeger"
    ;;
  *)
    echo "usage: $0 build|paths" >&2
    exit 2
    ;;
esac
