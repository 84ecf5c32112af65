#!/usr/bin/env bash
# Installs what the project needs and is missing: system packages (Java, Maven, PostgreSQL, and Redis for
# the benchmark baseline) and the Python virtual environment with the pinned dependencies. Idempotent;
# downloads are cached under ~/.cache/flashsale.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${FLASHSALE_CACHE_DIR:-$HOME/.cache/flashsale}"
venv="${VENV:-.venv}"
mkdir -p "$cache"

need_apt=()
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need_apt+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-benchmark >/dev/null 2>&1 || need_apt+=(redis-tools)
command -v python3.11 >/dev/null 2>&1 || command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "bootstrap: installing ${need_apt[*]}"
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

stamp="$venv/.flashsale-installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  python=$(command -v python3.11 || command -v python3)
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --cache-dir "$cache/pip" --upgrade pip
  "$venv/bin/pip" install -q --cache-dir "$cache/pip" -e '.[dev]'
  rm -f "$venv"/.flashsale-installed-*
  touch "$stamp"
fi
