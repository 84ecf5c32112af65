"""Settings only the gateway reads, from FLASHSALE_* variables (the shared ones live in common.settings)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

import pydantic
import pydantic_settings

from flashsale.common import settings as common_settings


class GatewaySettings(pydantic_settings.BaseSettings):
    """The gateway's own settings; the admin key is required."""

    model_config = pydantic_settings.SettingsConfigDict(
        env_prefix=common_settings.ENV_PREFIX, extra="ignore", frozen=True
    )

    admin_api_key: pydantic.SecretStr = pydantic.Field(
        description="Value the X-Admin-Key header must carry on admin endpoints (required, non-empty)."
    )
    rpc_timeout_s: float = pydantic.Field(10.0, gt=0, le=120, description="Deadline of a gRPC call.")
    purchase_timeout_s: float = pydantic.Field(
        5.0, gt=0, le=60, description="Deadline of a Purchase call beyond its wait."
    )
    purchase_wait_s: float = pydantic.Field(
        3.0, ge=0, le=30, description="How long a purchase waits for its decision before answering 202 PENDING."
    )
    health_timeout_s: float = pydantic.Field(2.0, gt=0, le=30, description="Deadline of a readiness probe call.")
    sse_keepalive_s: float = pydantic.Field(15.0, gt=0, le=300, description="Interval of SSE keep-alive comments.")
    stream_max_s: float = pydantic.Field(
        3600.0, gt=0, description="Deadline of a notification subscription; clients reconnect after it."
    )
    rate_limit_max_keys: int = pydantic.Field(
        100_000, ge=1, description="Most clients tracked by the rate limiter; the idlest are evicted first."
    )
    shutdown_grace_s: float = pydantic.Field(10.0, ge=0, description="Time open requests get at shutdown.")
    gateway_trusted_proxies: Annotated[
        tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...], pydantic_settings.NoDecode
    ] = pydantic.Field(
        (),
        description="Comma-separated CIDRs of the proxies (an ingress) whose X-Forwarded-For names the client; "
        "empty: the connection's address is the client's.",
    )

    @pydantic.field_validator("gateway_trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        if isinstance(value, str):  # from the environment: 10.0.0.0/8,192.168.0.0/16
            return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip())
        return value

    @pydantic.field_validator("admin_api_key")
    @classmethod
    def _not_empty(cls, value: pydantic.SecretStr) -> pydantic.SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must be set")
        return value


def load_gateway_settings() -> GatewaySettings:
    """Read the gateway settings from the environment, failing fast naming the variable."""
    try:
        return GatewaySettings()
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = common_settings.ENV_PREFIX + "_".join(str(p) for p in err["loc"]).upper()
            message = "must be set" if err["type"] == "missing" else err["msg"]
            problems.append(f"{name}: {message}")
        raise common_settings.ConfigError("; ".join(problems)) from None
