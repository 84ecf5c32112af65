"""Typed settings read once from FLASHSALE_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pydantic
import pydantic_settings

ENV_PREFIX = "FLASHSALE_"


class ConfigError(Exception):
    """A configuration variable is missing or has a bad value; the message names it."""


class Settings(pydantic_settings.BaseSettings):
    """Every setting of every Flashsale process; each process reads the ones it needs."""

    model_config = pydantic_settings.SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = pydantic.Field(
        "INFO", description="Log level of every process."
    )
    log_format: Literal["json", "text"] = pydantic.Field("json", description="Structured JSON or plain text logs.")
    kafka_bootstrap: str = pydantic.Field("127.0.0.1:9092", description="Kafka bootstrap servers.")
    kafka_partitions: int = pydantic.Field(8, ge=1, le=256, description="Partitions of topics the services create.")
    kafka_event_batch_wait_ms: int = pydantic.Field(
        50,
        ge=0,
        le=1000,
        description="How long an event may wait at the broker to travel with others to its consumer (orders, "
        "e-mails, catalog); 0: each fetched at once. Purchases' decisions are always fetched at once.",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = pydantic.Field(
        "PLAINTEXT", description="How the Kafka clients connect: SASL_SSL for a Strimzi KafkaUser on the TLS listener."
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = pydantic.Field(
        "SCRAM-SHA-512", description="SASL mechanism of the Kafka user (SASL_* protocols)."
    )
    kafka_sasl_username: str = pydantic.Field("", description="Kafka user name (required by the SASL_* protocols).")
    kafka_sasl_password: pydantic.SecretStr = pydantic.Field(
        pydantic.SecretStr(""), description="Kafka user's password (required by the SASL_* protocols)."
    )
    kafka_ssl_ca_location: str = pydantic.Field(
        "",
        description="PEM file of the CA that signed the brokers' certificates (Strimzi's cluster CA, ca.crt) for the "
        "SSL protocols; empty: the system's CAs.",
    )
    db_backend: Literal["sqlite", "postgres"] = pydantic.Field("sqlite", description="Storage backend.")
    sqlite_dir: Path = pydantic.Field(Path("var"), description="Folder of the SQLite files, one per service.")
    postgres_dsn: str = pydantic.Field(
        "postgresql://postgres@127.0.0.1:5432/flashsale",
        description="PostgreSQL DSN; each service keeps its tables in a schema of its own.",
    )
    postgres_pool_size: int = pydantic.Field(8, ge=1, le=200, description="Connections per service pool.")
    user_addr: str = pydantic.Field("127.0.0.1:50051", description="gRPC address of the user service.")
    product_addr: str = pydantic.Field("127.0.0.1:50052", description="gRPC address of the product service.")
    sales_addr: str = pydantic.Field("127.0.0.1:50053", description="gRPC address of the sales service.")
    order_addr: str = pydantic.Field("127.0.0.1:50054", description="gRPC address of the order service.")
    notification_addr: str = pydantic.Field("127.0.0.1:50055", description="gRPC address of the notification service.")
    grpc_listen: str = pydantic.Field(
        "",
        description="host:port a service's gRPC server binds (e.g. 0.0.0.0:50051 in a pod); empty: its own address "
        "above, which the other services dial.",
    )
    gateway_host: str = pydantic.Field("127.0.0.1", description="Interface the HTTP gateway binds.")
    metrics_host: str = pydantic.Field("127.0.0.1", description="Interface the Prometheus metrics endpoint binds.")
    metrics_port: int = pydantic.Field(
        0,
        ge=0,
        le=65535,
        description="Port of the process's Prometheus metrics endpoint (/metrics); 0: none, and nothing recorded.",
    )
    gateway_port: int = pydantic.Field(8080, ge=1, le=65535, description="Port of the HTTP gateway.")
    sales_worker: bool = pydantic.Field(
        True, description="Run a pipeline worker (single writer of request-topic partitions) in the sales process."
    )
    sales_batch_max: int = pydantic.Field(
        5000, ge=1, le=100_000, description="Most requests a sales worker decides in one transaction."
    )
    sales_default_partitions: int = pydantic.Field(
        8, ge=1, le=256, description="Partitions a new sale's stock is split over until PrepareSale splits it again."
    )
    jwt_secret: pydantic.SecretStr = pydantic.Field(
        pydantic.SecretStr(""), description="HMAC key signing access tokens (required by the user service)."
    )
    jwt_ttl_s: int = pydantic.Field(3600, ge=60, description="Lifetime of an access token in seconds.")
    verification_ttl_s: int = pydantic.Field(86400, ge=60, description="Lifetime of an e-mail verification token.")
    payment_window_s: float = pydantic.Field(900.0, gt=0, description="Time an order waits for payment.")
    expiry_scan_s: float = pydantic.Field(1.0, gt=0, description="How often the order service expires orders.")
    smtp_host: str = pydantic.Field("127.0.0.1", description="SMTP server for e-mail notifications.")
    smtp_port: int = pydantic.Field(8025, ge=1, le=65535, description="SMTP port.")
    smtp_sender: str = pydantic.Field("noreply@flashsale.local", description="From address of e-mails.")
    sms_url: str = pydantic.Field("", description="HTTP endpoint of the SMS provider; empty disables SMS.")
    delivery_attempts: int = pydantic.Field(5, ge=1, le=20, description="Attempts per notification delivery.")
    delivery_backoff_s: float = pydantic.Field(0.2, gt=0, description="First retry delay, doubled each attempt.")
    gateway_rate_limit_per_s: float = pydantic.Field(
        50.0, gt=0, description="Requests per second per client allowed by the gateway."
    )
    gateway_rate_burst: int = pydantic.Field(100, ge=1, description="Burst of requests allowed by the gateway.")


def env_table(model: type[pydantic_settings.BaseSettings] = Settings) -> list[tuple[str, str, str]]:
    """(variable, default, description) of every setting of a settings class, for the README."""
    rows = []
    for name, field in model.model_fields.items():
        default = field.default
        if field.is_required():
            shown = "(required)"
        elif isinstance(default, pydantic.SecretStr) or default in ("", ()):
            shown = "(empty)"
        else:
            shown = f"`{default}`"
        rows.append((ENV_PREFIX + name.upper(), shown, field.description or ""))
    return rows


def load_settings() -> Settings:
    """Read the settings from the environment, failing fast with the variable's name."""
    try:
        return Settings()
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ENV_PREFIX + "_".join(str(p) for p in err["loc"]).upper()
            problems.append(f"{name}: {err['msg']}")
        raise ConfigError("; ".join(problems)) from None


def require_secret(value: pydantic.SecretStr, field: str) -> str:
    """Return a secret's value or fail naming its variable when it is empty."""
    raw = value.get_secret_value()
    if not raw:
        raise ConfigError(f"{ENV_PREFIX}{field.upper()}: must be set")
    return raw
