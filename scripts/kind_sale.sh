#!/usr/bin/env bash
# On a cluster running both charts (release "flashsale" in namespace $1, default flashsale, installed with
# k8s/kind/values-e2e.yaml on top of the dev values): a FlashSale applied; once the operator has made its sale, the
# in-cluster load test (k8s/kind/loadtest.yaml) onboards shoppers through the gateway and buys the sale out when it
# opens, then checks every invariant (its exit code is the verdict); meanwhile the FlashSale goes Active with the sales
# Deployment scaled up, then Ended; `flashsale verify` checks the sale once more. Used by
# .github/workflows/e2e-kind.yml; needs kubectl and the repository's .venv (PyYAML).
set -euo pipefail
cd "$(dirname "$0")/.."
ns=${1:-flashsale}
py=${PYTHON:-.venv/bin/python}
log() { echo "kind-sale: $*" >&2; }
in_sales() { kubectl exec -n "$ns" deploy/flashsale-sales -c sales -- "$@"; }

product=$(in_sales python -c '
import os, grpc
from flashsale_api.v1 import product_pb2, product_pb2_grpc
with grpc.insecure_channel(os.environ["FLASHSALE_PRODUCT_ADDR"]) as channel:
    made = product_pb2_grpc.ProductServiceStub(channel).CreateProduct(
        product_pb2.CreateProductRequest(name="Kind sneaker", base_price_cents=9999), timeout=10)
print(made.product_id)')
log "product $product"

# Opens in 3 minutes (600 shoppers to onboard first), open for 2.
"$py" - "$product" "$ns" <<'PY' | kubectl apply -f -
import datetime, sys, yaml
product, namespace = sys.argv[1], sys.argv[2]
now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
manifest = yaml.safe_load(open("k8s/examples/flashsale.yaml"))
manifest["metadata"].update(name="kind-drop", namespace=namespace)
manifest["spec"].update(
    productId=product,
    stock=200,
    startsAt=(now + datetime.timedelta(seconds=180)).isoformat().replace("+00:00", "Z"),
    endsAt=(now + datetime.timedelta(seconds=300)).isoformat().replace("+00:00", "Z"),
)
print(yaml.safe_dump(manifest))
PY

sale=""
for _ in $(seq 120); do
  sale=$(kubectl get -n "$ns" flashsale/kind-drop -o jsonpath='{.status.saleId}')
  [ -n "$sale" ] && break
  sleep 1
done
[ -n "$sale" ] || { log "the operator made no sale in 2 minutes"; kubectl describe -n "$ns" flashsale/kind-drop; exit 1; }
log "sale $sale; the load test starts in the cluster"

"$py" - "$sale" <<'PY' | kubectl apply -n "$ns" -f -
import sys, yaml
docs = list(yaml.safe_load_all(open("k8s/kind/loadtest.yaml")))
for doc in docs:
    if doc["kind"] == "Pod":
        args = doc["spec"]["containers"][0]["args"]
        args[args.index("--sale=SALE_ID")] = f"--sale={sys.argv[1]}"
print(yaml.safe_dump_all(docs))
PY

kubectl wait -n "$ns" flashsale/kind-drop --for=jsonpath='{.status.phase}'=Active --timeout=6m
log "sales replicas while Active: $(kubectl get deployment -n "$ns" flashsale-sales -o jsonpath='{.spec.replicas}')"

phase=""
for _ in $(seq 600); do
  phase=$(kubectl get -n "$ns" pod/flashsale-loadtest -o jsonpath='{.status.phase}')
  case "$phase" in Succeeded|Failed) break ;; esac
  sleep 1
done
kubectl logs -n "$ns" pod/flashsale-loadtest
[ "$phase" = Succeeded ] || { log "the load test ended $phase (exit code: violations or an undecided request)"; exit 1; }

kubectl wait -n "$ns" flashsale/kind-drop --for=jsonpath='{.status.phase}'=Ended --timeout=5m
log "sales replicas once Ended: $(kubectl get deployment -n "$ns" flashsale-sales -o jsonpath='{.spec.replicas}')"
kubectl get flashsales -n "$ns" >&2
in_sales flashsale verify --sale "$sale" --wait-settled 60
