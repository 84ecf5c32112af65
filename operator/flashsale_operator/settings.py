"""Settings only the operator reads, from FLASHSALE_* variables (the sales address and logs are in common.settings)."""

from __future__ import annotations

import pydantic
import pydantic_settings

from flashsale.common import settings as common_settings


class OperatorSettings(pydantic_settings.BaseSettings):
    """The operator's own settings."""

    model_config = pydantic_settings.SettingsConfigDict(
        env_prefix=common_settings.ENV_PREFIX, extra="ignore", frozen=True
    )

    operator_namespace: str = pydantic.Field(
        "", description="Namespace whose FlashSales the operator watches; empty watches every namespace."
    )
    strimzi_cluster: str = pydantic.Field(
        "flashsale", min_length=1, description="Strimzi Kafka cluster of the request topics (strimzi.io/cluster)."
    )
    topic_namespace: str = pydantic.Field(
        "", description="Namespace of the KafkaTopics; empty puts each in its FlashSale's namespace."
    )
    topic_replicas: int = pydantic.Field(
        0, ge=0, le=32767, description="Replicas of each request topic partition; 0 takes the broker's default."
    )
    sales_deployment: str = pydantic.Field(
        "flashsale-sales", min_length=1, description="Sales Deployment a FlashSale scales when its spec names none."
    )
    operator_poll_s: float = pydantic.Field(
        1.0, gt=0, le=60, description="How often the operator looks while waiting for a topic or a service."
    )
    operator_stats_interval_s: float = pydantic.Field(
        2.0, gt=0, le=300, description="How often an Active FlashSale's sold and remaining are refreshed."
    )
    operator_health_port: int = pydantic.Field(
        0, ge=0, le=65535, description="Port of Kopf's liveness endpoint (/healthz on every interface); 0: none."
    )
    operator_rpc_timeout_s: float = pydantic.Field(
        10.0, gt=0, le=120, description="Deadline of the operator's calls to the sales service."
    )


def load_operator_settings() -> OperatorSettings:
    """Read the operator settings from the environment, failing fast naming the variable."""
    try:
        return OperatorSettings()
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = common_settings.ENV_PREFIX + "_".join(str(p) for p in err["loc"]).upper()
            problems.append(f"{name}: {err['msg']}")
        raise common_settings.ConfigError("; ".join(problems)) from None
