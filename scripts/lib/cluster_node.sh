# shellcheck shell=bash
# The running half of scripts/cluster.sh: one node's control plane, containerd, kubelet and kube-proxy as local
# processes, pods on a CNI bridge private to this machine. Sourced by scripts/cluster.sh, which sets repo, state,
# node_bin, containerd_bin, k8s_bin, images, SANDBOX_IMAGE, log and die, and sources lib/processes.sh.

NODE_NAME=flashsale-node
BRIDGE=fs0
NODE_IP=10.244.0.1 # the bridge's gateway address: kubelet refuses loopback and this kernel has no dummy links
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/24
API_SERVICE_IP=10.96.0.1
DNS_SERVICE_IP=10.96.0.10
API_PORT=6443
# what kubelet, kube-proxy and the bridge plugin change on the host, put back by down
SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables)
HOST_PATHS=(/var/lib/kubelet /var/log/containers /var/log/pods /var/lib/cni /etc/cni /run/containerd)
PROCESSES=(kube-proxy kubelet containerd kube-scheduler kube-controller-manager kube-apiserver etcd)

start() { # name command...: a background process in its own session, its log and pid in the state folder
  local name=$1
  shift
  setsid "$@" >"$state/$name.log" 2>&1 </dev/null &
  echo $! >"$state/$name.pid"
  log "started $name (pid $!, log $state/$name.log)"
}

kctl() { "$k8s_bin/kubectl" --kubeconfig="$state/kubeconfig" "$@"; }

# wait_until SECONDS WHAT COMMAND...: poll COMMAND until it succeeds; fail naming WHAT and the dead processes.
wait_until() {
  local deadline=$((SECONDS + $1)) what=$2 name
  shift 2
  until "$@" >/dev/null 2>&1; do
    for name in "${PROCESSES[@]}"; do
      if [ -f "$state/$name.pid" ] && ! pid_alive "$state/$name.pid"; then
        die "$name exited while waiting for $what; its log:$(printf '\n'; tail -n 30 "$state/$name.log")"
      fi
    done
    [ $SECONDS -lt $deadline ] || die "no $what after $1 s; logs in $state"
    sleep 1
  done
}

# remember_host: what up changes on the host, so down can put it back (only on the first up of a state folder).
remember_host() {
  [ -f "$state/host/saved" ] && return 0
  mkdir -p "$state/host"
  local key p
  for key in "${SYSCTLS[@]}"; do echo "$key=$(sysctl -n "$key")"; done >"$state/host/sysctl"
  for p in "${HOST_PATHS[@]}"; do [ -e "$p" ] && echo "$p"; done >"$state/host/paths" || true
  iptables-save >"$state/host/iptables"
  touch "$state/host/saved"
}

restore_host() {
  [ -f "$state/host/saved" ] || return 0
  local line p
  while IFS= read -r line; do sysctl -q -w "$line" >/dev/null || log "could not restore $line"; done <"$state/host/sysctl"
  iptables-restore <"$state/host/iptables" || log "could not restore the iptables rules"
  local table
  for table in filter nat mangle; do # a table that had no rules before up: emptied again
    grep -qx "\*$table" "$state/host/iptables" && continue
    iptables -t "$table" -F 2>/dev/null && iptables -t "$table" -X 2>/dev/null || true
  done
  for p in "${HOST_PATHS[@]}"; do
    grep -qxF "$p" "$state/host/paths" && continue
    if [ -e "$p" ]; then
      unmount_under "$p"
      rm -rf "$p"
    fi
  done
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE"
  ip link show cni0 >/dev/null 2>&1 && ip link delete cni0
  rm -f "$state/host/saved"
}

unmount_under() { # path: every mount below it, deepest first
  local m
  while read -r m; do umount -l "$m" 2>/dev/null || true; done < <(awk -v p="$1" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r)
}

# make_pki: a CA; serving certificates of the API server (every name pods and the host use) and the kubelet; client
# certificates of the admin, the node, the controller manager, the scheduler, kube-proxy and the API server's
# kubelet client; the service-account key pair.
make_pki() {
  local pki="$state/pki"
  [ -f "$pki/done" ] && return 0
  mkdir -p "$pki"
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=flashsale-cluster-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout ca.key -out ca.crt 2>/dev/null
    sign() { # name subject extensions...
      local name=$1 subject=$2
      shift 2
      openssl req -new -newkey rsa:2048 -nodes -subj "$subject" -keyout "$name.key" -out "$name.csr" 2>/dev/null
      printf '%s\n' 'keyUsage=critical,digitalSignature,keyEncipherment' "$@" >"$name.ext"
      openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
        -extfile "$name.ext" -out "$name.crt" 2>/dev/null
      rm -f "$name.csr" "$name.ext"
    }
    local names="DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
    names+=",DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$NODE_IP,IP:$API_SERVICE_IP"
    sign apiserver "/CN=kube-apiserver" "subjectAltName=$names" 'extendedKeyUsage=serverAuth'
    sign kubelet-serving "/CN=$NODE_NAME" "subjectAltName=DNS:$NODE_NAME,IP:$NODE_IP" 'extendedKeyUsage=serverAuth'
    sign admin "/O=system:masters/CN=flashsale-admin" 'extendedKeyUsage=clientAuth'
    sign node "/O=system:nodes/CN=system:node:$NODE_NAME" 'extendedKeyUsage=clientAuth'
    sign controller-manager "/CN=system:kube-controller-manager" 'extendedKeyUsage=clientAuth'
    sign scheduler "/CN=system:kube-scheduler" 'extendedKeyUsage=clientAuth'
    sign kube-proxy "/CN=system:kube-proxy" 'extendedKeyUsage=clientAuth'
    sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" 'extendedKeyUsage=clientAuth'
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    chmod 600 ./*.key
    touch done
  )
}

write_kubeconfig() { # name: kubeconfig-<name> with the client certificate <name>
  local kc="$state/kubeconfig-$1" pki="$state/pki"
  local k=("$k8s_bin/kubectl" --kubeconfig="$kc")
  "${k[@]}" config set-cluster flashsale --server="https://$NODE_IP:$API_PORT" \
    --certificate-authority="$pki/ca.crt" --embed-certs=true >/dev/null
  "${k[@]}" config set-credentials "$1" --client-certificate="$pki/$1.crt" --client-key="$pki/$1.key" \
    --embed-certs=true >/dev/null
  "${k[@]}" config set-context flashsale --cluster=flashsale --user="$1" --namespace=default >/dev/null
  "${k[@]}" config use-context flashsale >/dev/null
}

# make_bridge: the pods' bridge with the node's address, before kubelet starts (the node IP must exist).
make_bridge() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$NODE_IP/24" dev "$BRIDGE"
  fi
  ip link set "$BRIDGE" up
  sysctl -q -w net.bridge.bridge-nf-call-iptables=1 # pod to Service to pod on one bridge goes through kube-proxy's rules
  # pods reach this machine (the node's address) and one another, nothing beyond it: no masquerade, no forwarding out
  iptables -C FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP 2>/dev/null ||
    iptables -I FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP
  mkdir -p "$state/cni/net.d" "$state/cni/ipam"
  cat >"$state/cni/net.d/10-flashsale.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "flashsale",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$state/cni/ipam", "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
EOF
}

start_control_plane() {
  local pki="$state/pki" etcd_client etcd_peer
  read -r etcd_client etcd_peer <<<"$(free_ports 2)"
  local etcd_args=(--name=flashsale --data-dir="$state/etcd" --logger=zap
    --listen-client-urls="http://127.0.0.1:$etcd_client" --advertise-client-urls="http://127.0.0.1:$etcd_client"
    --listen-peer-urls="http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer"
    --initial-cluster="flashsale=http://127.0.0.1:$etcd_peer")
  start etcd /usr/bin/etcd "${etcd_args[@]}"
  # bound to the node's address: the host and the pods (through the kubernetes Service) both reach it there
  start kube-apiserver "$k8s_bin/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$etcd_client" \
    --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port="$API_PORT" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$pki/apiserver-kubelet-client.key" --kubelet-certificate-authority="$pki/ca.crt" \
    --kubelet-preferred-address-types=InternalIP \
    --service-cluster-ip-range="$SERVICE_CIDR" --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --service-account-issuer="https://kubernetes.default.svc" --service-account-key-file="$pki/sa.pub" \
    --service-account-signing-key-file="$pki/sa.key"
  wait_until 180 "a ready API server" kctl --request-timeout=5s get --raw /readyz
  start kube-controller-manager "$node_bin/kube-controller-manager" \
    --kubeconfig="$state/kubeconfig-controller-manager" \
    --authentication-kubeconfig="$state/kubeconfig-controller-manager" \
    --authorization-kubeconfig="$state/kubeconfig-controller-manager" \
    --bind-address=127.0.0.1 --use-service-account-credentials=true \
    --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
    --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" --allocate-node-cidrs=false --leader-elect=false
  start kube-scheduler "$node_bin/kube-scheduler" \
    --kubeconfig="$state/kubeconfig-scheduler" \
    --authentication-kubeconfig="$state/kubeconfig-scheduler" \
    --authorization-kubeconfig="$state/kubeconfig-scheduler" \
    --bind-address=127.0.0.1 --leader-elect=false
}

start_containerd() {
  sed -e "s#@STATE@#$state#g" -e "s#@SANDBOX_IMAGE@#$SANDBOX_IMAGE#g" "$repo/k8s/node/containerd.toml" \
    >"$state/containerd.toml"
  start containerd env PATH="$containerd_bin:$PATH" "$containerd_bin/containerd" --config "$state/containerd.toml"
  wait_until 60 "containerd" ctr_k8s version
  local archive
  archive=$(ls -t "$images"/pause-*.tar | head -n 1)
  ctr_k8s images import "$archive" >/dev/null
}

ctr_k8s() { "$containerd_bin/ctr" --address "$state/containerd/containerd.sock" -n k8s.io "$@" 2>/dev/null; }

start_kubelet() {
  local pki="$state/pki"
  mkdir -p "$state/kubelet" "$state/pod-logs"
  cat >"$state/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
containerRuntimeEndpoint: unix://$state/containerd/containerd.sock
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDomain: cluster.local
clusterDNS: [$DNS_SERVICE_IP]
podLogsDir: $state/pod-logs
resolvConf: /etc/resolv.conf
evictionHard: {memory.available: "100Mi", nodefs.available: "2%", imagefs.available: "2%"}
imageGCHighThresholdPercent: 100
registerNode: true
EOF
  start kubelet "$node_bin/kubelet" --config="$state/kubelet.yaml" --kubeconfig="$state/kubeconfig-node" \
    --root-dir="$state/kubelet" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP"
  wait_until 180 "a Ready node" node_ready
}

node_ready() {
  [ "$(kctl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

start_kube_proxy() {
  cat >"$state/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: $POD_CIDR
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
hostnameOverride: $NODE_NAME
clientConnection: {kubeconfig: $state/kubeconfig-kube-proxy}
conntrack: {maxPerCore: 0}
EOF
  start kube-proxy "$node_bin/kube-proxy" --config="$state/kube-proxy.yaml"
}

start_dns() {
  ctr_k8s images import "$images/coredns-$COREDNS_VERSION.tar" >/dev/null
  sed "s#image: localhost/flashsale/coredns:.*#image: $COREDNS_IMAGE#" "$repo/k8s/node/coredns.yaml" | kctl apply -f - >/dev/null
  kctl -n kube-system rollout status deployment/coredns --timeout=180s >/dev/null ||
    die "CoreDNS did not become ready; kubectl -n kube-system describe pods -l app.kubernetes.io/name=coredns"
  # until kube-proxy routes the kube-dns Service to the ready pod, a lookup there is refused
  wait_until 60 "kube-proxy's rules for the kube-dns Service" dns_routed
  log "CoreDNS ready"
}

dns_routed() {
  iptables -t nat -S KUBE-SERVICES | grep -q -- "kube-system/kube-dns:dns cluster IP" &&
    ! iptables -S KUBE-SERVICES 2>/dev/null | grep -q -- "kube-system/kube-dns:dns has no endpoints"
}

node_up() {
  if [ -f "$state/ready" ] && node_ready; then
    echo "KUBECONFIG=$state/kubeconfig"
    return 0
  fi
  build
  node_down_quiet
  [ "$(id -u)" -eq 0 ] || die "a node needs root (network links, mounts, cgroups)"
  mkdir -p "$state"
  touch "$state/.cluster"
  trap stop_processes EXIT # a failed up stops what it started and keeps the logs; down puts the host back
  remember_host
  make_pki
  local name
  for name in admin node controller-manager scheduler kube-proxy; do write_kubeconfig "$name"; done
  cp "$state/kubeconfig-admin" "$state/kubeconfig"
  make_bridge
  start_control_plane
  start_containerd
  start_kubelet
  start_kube_proxy
  start_dns
  touch "$state/ready"
  trap - EXIT
  echo "KUBECONFIG=$state/kubeconfig"
}

stop_processes() {
  local name
  for name in "${PROCESSES[@]}"; do stop_pid "$name" "$state/$name.pid"; done
  # the pods' shims and containers outlive containerd: stop what runs under this node's state
  pkill -TERM -f "containerd-shim-runc-v2 .*$state" 2>/dev/null || true
  runc --root "$state/runc/k8s.io" list -q 2>/dev/null |
    while read -r id; do runc --root "$state/runc/k8s.io" kill "$id" KILL 2>/dev/null || true; done
  unmount_under "$state"
}

node_down_quiet() {
  [ -e "$state" ] || return 0
  if ! [ -f "$state/.cluster" ]; then
    rmdir "$state" 2>/dev/null || die "$state exists but was not made by scripts/cluster.sh: not touching it"
    return 0
  fi
  stop_processes
  restore_host
  rm -rf "$state"
}

node_down() {
  if [ -e "$state" ]; then node_down_quiet && log "stopped; host put back; removed $state"; else log "not running ($state absent)"; fi
}

node_env() {
  node_ready 2>/dev/null || die "not up: run scripts/cluster.sh up"
  printf 'export KUBECONFIG=%q\n' "$state/kubeconfig"
  # shellcheck disable=SC2016  # $PATH is for the shell that evaluates these lines
  printf 'export PATH=%q:"$PATH"\n' "$k8s_bin"
}

free_ports() { # N distinct free loopback ports, drawn like flashsale_tools.platform.cache.free_port does
  "${PYTHON:-$repo/.venv/bin/python}" - "$1" <<'PY'
import sys
from flashsale_tools.platform import cache
ports: set[int] = set()
while len(ports) < int(sys.argv[1]):
    ports.add(cache.free_port())
print(*ports)
PY
}
