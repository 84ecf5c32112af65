#!/usr/bin/env bash
# One environment of the deploy pipeline (.github/workflows/deploy.yml): both charts at VERSION with
# `helm upgrade --install --atomic --wait`, then a smoke test through the gateway (GATEWAY_URL/readyz and the sales
# list); a failed smoke test rolls the flashsale release back to its previous revision and fails.
# Environment: KUBECONFIG_DATA (the cluster's kubeconfig), CHARTS (the OCI chart repository), VALUES (a values file
# in the repository, optional), GATEWAY_URL, NAMESPACE (default flashsale).
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:?usage: scripts/deploy.sh VERSION}
ns=${NAMESPACE:-flashsale}
kubeconfig=$(mktemp)
trap 'rm -f "$kubeconfig"' EXIT
printf '%s' "$KUBECONFIG_DATA" > "$kubeconfig"
export KUBECONFIG=$kubeconfig
values=()
[ -n "${VALUES:-}" ] && values=(-f "$VALUES")

helm upgrade --install flashsale "$CHARTS/flashsale" --version "$version" --namespace "$ns" --create-namespace \
  "${values[@]}" --atomic --wait --timeout 15m
helm upgrade --install flashsale-operator "$CHARTS/flashsale-operator" --version "$version" --namespace "$ns" \
  --atomic --wait --timeout 5m

smoke() {
  curl --fail --silent --show-error --retry 10 --retry-delay 6 --retry-all-errors "$GATEWAY_URL/readyz" >/dev/null &&
    curl --fail --silent --show-error "$GATEWAY_URL/v1/sales" >/dev/null
}
if ! smoke; then
  echo "deploy: smoke test failed; rolling flashsale back" >&2
  helm rollback flashsale --namespace "$ns" --wait --timeout 15m
  exit 1
fi
echo "deploy: flashsale $version is live in $ns" >&2
