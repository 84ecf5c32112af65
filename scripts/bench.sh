#!/usr/bin/env bash
# `make bench`: one workload, in one process tree and one run, through the naive and conditional PostgreSQL
# designs, Redis Lua at redis-benchmark's ceiling, bare gRPC, Flashsale's pipeline, the REST gateway against a bare
# FastAPI endpoint; writes reports/bench.json. Installs Debian's redis-server / redis-tools, PostgreSQL 15 and wrk
# if missing (idempotent), and builds vegeta (the open-loop HTTP client of (h)) from its Go module once, cached by
# version under ~/.cache/flashsale/bench/vegeta/<version>/bin. Extra arguments go
# to `python -m flashsale_tools.bench` (e.g. --only a,b or --purchases 10000).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
VEGETA_VERSION="${VEGETA_VERSION:-v12.13.0}"
cache="${FLASHSALE_CACHE_DIR:-$HOME/.cache/flashsale}"

log() { echo "bench: $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=lib/go_tools.sh
source scripts/lib/go_tools.sh
vegeta_bin="$cache/bench/vegeta/$VEGETA_VERSION/bin"
if [ ! -x "$vegeta_bin/vegeta" ]; then
  mkdir -p "$(dirname "$vegeta_bin")"
  (
    exec 9>"$vegeta_bin.lock"
    flock 9
    [ -x "$vegeta_bin/vegeta" ] && exit 0
    go_build_pinned "$vegeta_bin" github.com/tsenart/vegeta/v12 "$VEGETA_VERSION" "" "" "-s -w" github.com/tsenart/vegeta/v12
  )
fi
export FLASHSALE_BENCH_VEGETA="$vegeta_bin/vegeta"

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-benchmark >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need_apt+=(postgresql)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)  # the HTTP client of (h) and (i)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "bench: installing ${need_apt[*]}"
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

exec "$py" -m flashsale_tools.bench --report "${BENCH_REPORT:-reports/bench.json}" "$@"
