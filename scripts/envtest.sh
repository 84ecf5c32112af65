#!/usr/bin/env bash
# A real Kubernetes control plane for operator tests, the way controller-runtime's envtest runs one: etcd and
# kube-apiserver as local processes on loopback ports, no kubelet, no controller-manager, no Docker.
#
#   scripts/envtest.sh build   build kube-apiserver and kubectl (and etcd if needed), cached by version
#   scripts/envtest.sh up      start etcd + kube-apiserver, install the CRDs, print KUBECONFIG=<path>
#   scripts/envtest.sh down    stop both and remove the state folder
#   scripts/envtest.sh env     print export lines for the running control plane
#
# Binaries are cached under ~/.cache/flashsale/k8s/<version>/bin (FLASHSALE_CACHE_DIR moves the cache);
# the state folder is var/envtest unless ENVTEST_DIR says otherwise. Every subcommand is idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
ENVTEST_ETCD="${ENVTEST_ETCD:-debian}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.8}"
cache="${FLASHSALE_CACHE_DIR:-$HOME/.cache/flashsale}"
k8s_bin="$cache/k8s/$K8S_VERSION/bin"
etcd_bin="$cache/etcd/$ETCD_VERSION/bin"
etcd=""  # set by build_etcd
state="${ENVTEST_DIR:-var/envtest}"
case "$state" in /*) ;; *) state="$repo/$state" ;; esac

log() { echo "envtest: $*" >&2; }
die() { log "$*"; exit 1; }

# shellcheck source=lib/go_tools.sh
source "$repo/scripts/lib/go_tools.sh"
# shellcheck source=lib/processes.sh
source "$repo/scripts/lib/processes.sh"

# build_k8s: kube-apiserver and kubectl from k8s.io/kubernetes, its staging modules at the matching v0.Y.Z.
build_k8s() {
  if [ -x "$k8s_bin/kube-apiserver" ] && [ -x "$k8s_bin/kubectl" ]; then
    log "kube-apiserver and kubectl $K8S_VERSION cached in $k8s_bin"
    return 0
  fi
  local minor=${K8S_VERSION#v1.} ldflags="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do  # what `version` reports
    ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=${minor%%.*}"
    ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  go_build_pinned "$k8s_bin" k8s.io/kubernetes "$K8S_VERSION" \
    '^[[:space:]]*(k8s\.io/[^[:space:]]+) => \./staging/.*' "v0.$minor" "$ldflags" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
}

# build_etcd: Debian's etcd-server 3.4 (kube-apiserver accepts it; it only turns off RequestWatchProgress), or
# with ENVTEST_ETCD=build go.etcd.io/etcd/server/v3 at $ETCD_VERSION, the etcd client release Kubernetes pins.
build_etcd() {
  if [ "$ENVTEST_ETCD" = build ]; then
    etcd="$etcd_bin/etcd"
    if [ -x "$etcd" ]; then
      log "etcd $ETCD_VERSION cached in $etcd_bin"
    else
      go_build_pinned "$etcd_bin" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" \
        '^[[:space:]]*(go\.etcd\.io/etcd/[^[:space:]]+) => \.\./.*' "$ETCD_VERSION" "-s -w" go.etcd.io/etcd/server/v3
      mv "$etcd_bin/server" "$etcd"  # go names the binary of .../server/v3 "server"
    fi
    return 0
  fi
  [ "$ENVTEST_ETCD" = debian ] || die "ENVTEST_ETCD must be debian or build, not $ENVTEST_ETCD"
  if ! [ -x /usr/bin/etcd ]; then
    log "installing Debian's etcd-server"
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq etcd-server >/dev/null
  fi
  etcd=/usr/bin/etcd
  log "etcd $("$etcd" --version | sed -n 's/^etcd Version: //p') from $etcd"
}

build() {
  build_k8s
  build_etcd
}


# free_ports N: N distinct free loopback ports, drawn like flashsale_tools.platform.cache.free_port does.
free_ports() {
  "$python" - "$1" <<'PY'
import sys
from flashsale_tools.platform import cache
ports: set[int] = set()
while len(ports) < int(sys.argv[1]):
    ports.add(cache.free_port())
print(*ports)
PY
}

# pki: a CA, the API server's serving certificate for localhost/127.0.0.1, an admin client certificate in
# group system:masters, and the service-account signing key pair.
make_pki() {
  local pki="$state/pki"
  mkdir -p "$pki"
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=flashsale-envtest-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout ca.key -out ca.crt 2>/dev/null
    sign() {  # name subject extensions
      openssl req -new -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
      printf '%s\n' "$3" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    sign serving "/CN=localhost" "$(printf '%s\n' 'subjectAltName=DNS:localhost,IP:127.0.0.1' \
      'keyUsage=critical,digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth')"
    sign admin "/O=system:masters/CN=envtest-admin" "$(printf '%s\n' \
      'keyUsage=critical,digitalSignature,keyEncipherment' 'extendedKeyUsage=clientAuth')"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    chmod 600 ./*.key
  )
}

write_kubeconfig() {  # url
  local kc="$state/kubeconfig" pki="$state/pki"
  kubectl() { "$k8s_bin/kubectl" --kubeconfig="$kc" "$@" >/dev/null; }
  kubectl config set-cluster envtest --server="$1" --certificate-authority="$pki/ca.crt" --embed-certs=true
  kubectl config set-credentials envtest-admin --client-certificate="$pki/admin.crt" \
    --client-key="$pki/admin.key" --embed-certs=true
  kubectl config set-context envtest --cluster=envtest --user=envtest-admin --namespace=default
  kubectl config use-context envtest
  unset -f kubectl
}

# start name pidfile logfile command...: a background process in its own session, detached from our output.
start() {
  local name=$1 pidfile=$2 logfile=$3
  shift 3
  setsid "$@" >"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"
  log "started $name (pid $!, log $logfile)"
}

# wait_ready seconds: poll /readyz until it answers ok; fail early when a process died.
wait_ready() {
  local deadline=$((SECONDS + $1))
  until kctl --request-timeout=5s get --raw /readyz >/dev/null 2>&1; do
    pid_alive "$state/etcd.pid" || die "etcd exited; its log:$(printf '\n'; tail -n 30 "$state/etcd.log")"
    pid_alive "$state/kube-apiserver.pid" ||
      die "kube-apiserver exited; its log:$(printf '\n'; tail -n 30 "$state/kube-apiserver.log")"
    [ $SECONDS -lt $deadline ] || die "kube-apiserver not ready after $1 s; see $state/kube-apiserver.log"
    sleep 0.5
  done
}

kctl() { "$k8s_bin/kubectl" --kubeconfig="$state/kubeconfig" "$@"; }

install_crds() {
  local files=()
  mapfile -t files < <(find "$repo/k8s/crds/third-party" "$repo/operator/crds" -name '*.yaml' 2>/dev/null | sort)
  [ ${#files[@]} -gt 0 ] || die "no CRDs found under k8s/crds/third-party"
  local args=()
  for f in "${files[@]}"; do args+=(-f "$f"); done
  # Server-side apply: the Strimzi Kafka CRD is too large for client-side apply's annotation.
  kctl apply --server-side --force-conflicts "${args[@]}" >/dev/null
  kctl wait --for=condition=Established --timeout=60s "${args[@]}" >/dev/null
  log "installed ${#files[@]} CRDs"
}

up() {
  if [ -f "$state/ready" ] && pid_alive "$state/kube-apiserver.pid" && pid_alive "$state/etcd.pid" &&
    kctl --request-timeout=5s get --raw /readyz >/dev/null 2>&1; then
    echo "KUBECONFIG=$state/kubeconfig"
    return 0
  fi
  build
  down_quiet
  command -v openssl >/dev/null || die "openssl is needed for the certificates"
  [ -x "$python" ] || die "no $python: run make install first"
  mkdir -p "$state"
  touch "$state/.envtest"
  trap stop_processes EXIT  # a failed up stops what it started and keeps the logs; the next up starts afresh
  make_pki
  local etcd_client etcd_peer api_port url
  read -r etcd_client etcd_peer api_port <<<"$(free_ports 3)"
  url="https://127.0.0.1:$api_port"
  local etcd_args=(--name=envtest --data-dir="$state/etcd" --logger=zap
    --listen-client-urls="http://127.0.0.1:$etcd_client" --advertise-client-urls="http://127.0.0.1:$etcd_client"
    --listen-peer-urls="http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer"
    --initial-cluster="envtest=http://127.0.0.1:$etcd_peer")
  if "$etcd" --help 2>&1 | grep -q -- '--unsafe-no-fsync'; then etcd_args+=(--unsafe-no-fsync); fi
  start etcd "$state/etcd.pid" "$state/etcd.log" "$etcd" "${etcd_args[@]}"
  local pki="$state/pki"
  start kube-apiserver "$state/kube-apiserver.pid" "$state/kube-apiserver.log" "$k8s_bin/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$etcd_client" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
    --endpoint-reconciler-type=none \
    --tls-cert-file="$pki/serving.crt" --tls-private-key-file="$pki/serving.key" \
    --client-ca-file="$pki/ca.crt" \
    --service-cluster-ip-range=10.0.0.0/24 --allow-privileged=true \
    --disable-admission-plugins=ServiceAccount --authorization-mode=RBAC \
    --service-account-issuer="$url" --service-account-key-file="$pki/sa.pub" \
    --service-account-signing-key-file="$pki/sa.key"
  write_kubeconfig "$url"
  echo "$url" >"$state/server"
  wait_ready 180
  kctl version >/dev/null || die "kubectl version did not answer"
  install_crds
  touch "$state/ready"
  trap - EXIT
  echo "KUBECONFIG=$state/kubeconfig"
}

stop_processes() {
  stop_pid kube-apiserver "$state/kube-apiserver.pid"
  stop_pid etcd "$state/etcd.pid"
}

down_quiet() {
  [ -e "$state" ] || return 0
  if ! [ -f "$state/.envtest" ]; then  # an empty folder is fine; anything else is someone else's
    rmdir "$state" 2>/dev/null || die "$state exists but was not made by scripts/envtest.sh: not touching it"
    return 0
  fi
  stop_processes
  rm -rf "$state"
}

down() {
  if [ -e "$state" ]; then down_quiet && log "stopped; removed $state"; else log "not running ($state absent)"; fi
}

print_env() {
  if ! [ -f "$state/ready" ] || ! pid_alive "$state/kube-apiserver.pid"; then die "not up: run scripts/envtest.sh up"; fi
  printf 'export KUBECONFIG=%q\n' "$state/kubeconfig"
  printf 'export ENVTEST_SERVER=%q\n' "$(cat "$state/server")"
  printf 'export ENVTEST_BIN=%q\n' "$k8s_bin"
  # shellcheck disable=SC2016  # $PATH is for the shell that evaluates these lines
  printf 'export PATH=%q:"$PATH"\n' "$k8s_bin"
}

python="${PYTHON:-$repo/.venv/bin/python}"
case "${1:-}" in
  build) build ;;
  up) up ;;
  down) down ;;
  env) print_env ;;
  *) echo "usage: $0 build|up|down|env" >&2; exit 2 ;;
esac
