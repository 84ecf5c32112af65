"""Wiring of the operator process: settings, the Kubernetes and sales clients, the Kopf registry, and the run."""

from __future__ import annotations

import asyncio
import logging

import kopf
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config

from flashsale.common import logs, metrics, process
from flashsale.common import settings as common_settings
from flashsale_operator import decide, handlers, kube, operator_metrics
from flashsale_operator import settings as operator_settings
from flashsale_operator.sales_client import SalesClient

log = logging.getLogger(__name__)


async def api_client() -> k8s.ApiClient:
    """A Kubernetes API client: the pod's service account in a cluster, else the kubeconfig (KUBECONFIG)."""
    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        await k8s_config.load_kube_config(client_configuration=configuration, persist_config=False)
    return k8s.ApiClient(configuration=configuration)


async def run(
    config: common_settings.Settings,
    own: operator_settings.OperatorSettings,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the operator until SIGTERM/SIGINT (or `stop`)."""
    api = await api_client()
    sales = SalesClient(config.sales_addr, own.operator_rpc_timeout_s)
    recorded: operator_metrics.OperatorMetrics | None = None
    endpoint: metrics.Endpoint | None = None
    if config.metrics_port:
        registry = metrics.registry()
        recorded = operator_metrics.OperatorMetrics(registry)
        endpoint = metrics.serve(registry, config.metrics_host, config.metrics_port)
    ctx = handlers.Context(
        api=api,
        sales=sales,
        options=decide.Options(
            default_deployment=own.sales_deployment,
            poll_s=own.operator_poll_s,
            stats_interval_s=own.operator_stats_interval_s,
        ),
        kube_options=kube.KubeOptions(own.strimzi_cluster, own.topic_namespace, own.topic_replicas),
        metrics=recorded,
    )
    handlers_registry = kopf.OperatorRegistry()
    handlers.register(handlers_registry, ctx)
    kopf_settings = kopf.OperatorSettings()
    handlers.configure(kopf_settings)
    namespaces = [own.operator_namespace] if own.operator_namespace else []
    log.info(
        "operator starting",
        extra={"namespace": own.operator_namespace or "*", "sales": config.sales_addr, "cluster": own.strimzi_cluster},
    )
    try:
        await kopf.operator(
            registry=handlers_registry,
            settings=kopf_settings,
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
            stop_flag=stop,
            liveness_endpoint=f"http://0.0.0.0:{own.operator_health_port}/healthz"
            if own.operator_health_port
            else None,
        )
    finally:
        if endpoint is not None:
            endpoint.close()
        await sales.close()
        await api.close()


def _load() -> tuple[common_settings.Settings, operator_settings.OperatorSettings]:
    return common_settings.load_settings(), operator_settings.load_operator_settings()


async def _serve(loaded: tuple[common_settings.Settings, operator_settings.OperatorSettings]) -> None:
    config, own = loaded
    logs.configure_logging("operator", config.log_level, config.log_format)
    try:
        await run(config, own)
    except k8s_config.ConfigException as exc:
        raise SystemExit(f"operator: no Kubernetes credentials (in-cluster or KUBECONFIG): {exc}") from None


def main() -> None:
    """Run the FlashSale operator (configured by FLASHSALE_* variables and KUBECONFIG or the pod's account) until
    SIGTERM or SIGINT (exit 2 naming the variable on a bad setting)."""
    process.main("operator", _load, _serve)
