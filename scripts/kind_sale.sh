#!/usr/bin/env bash
# On a cluster running both charts (release "flashsale" in namespace $1, default flashsale): a FlashSale applied
# and followed to Ended while its sales Deployment is scaled up and back; a `flashsale loadtest` run from inside the
# sales pod (which has the platform's settings) must report zero violations; `flashsale verify` checks the
# FlashSale's sale. Used by .github/workflows/e2e-kind.yml; needs kubectl and the repository's .venv (PyYAML).
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

"$py" - "$product" "$ns" <<'PY' | kubectl apply -f -
import datetime, sys, yaml
product, namespace = sys.argv[1], sys.argv[2]
now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
manifest = yaml.safe_load(open("k8s/examples/flashsale.yaml"))
manifest["metadata"].update(name="kind-drop", namespace=namespace)
manifest["spec"].update(
    productId=product,
    startsAt=(now + datetime.timedelta(seconds=60)).isoformat().replace("+00:00", "Z"),
    endsAt=(now + datetime.timedelta(seconds=120)).isoformat().replace("+00:00", "Z"),
)
print(yaml.safe_dump(manifest))
PY

log "loadtest from inside the sales pod"
in_sales sh -c 'cd /tmp && flashsale loadtest --sales-addr "$FLASHSALE_SALES_ADDR" --product-addr "$FLASHSALE_PRODUCT_ADDR" \
  --users 2000 --stock 500 --limit 2 --partitions 4 --report /tmp/loadtest.json'

log "waiting for the FlashSale to end"
kubectl wait -n "$ns" flashsale/kind-drop --for=jsonpath='{.status.phase}'=Active --timeout=5m
kubectl get deployment -n "$ns" flashsale-sales -o jsonpath='{.spec.replicas}{"\n"}' >&2
kubectl wait -n "$ns" flashsale/kind-drop --for=jsonpath='{.status.phase}'=Ended --timeout=5m
kubectl get flashsales -n "$ns" >&2
sale=$(kubectl get -n "$ns" flashsale/kind-drop -o jsonpath='{.status.saleId}')
in_sales flashsale verify --sale "$sale" --wait-settled 60
