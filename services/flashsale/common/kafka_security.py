"""How a process's Kafka clients log in: the librdkafka settings of FLASHSALE_KAFKA_SECURITY_PROTOCOL and its
companions (a Strimzi KafkaUser's SCRAM password over the TLS listener, trusting the cluster CA), which every
producer, consumer and admin client of the process takes beside its bootstrap servers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import confluent_kafka

from flashsale.common.settings import ENV_PREFIX, ConfigError, Settings

Security = Mapping[str, str]  # librdkafka settings; empty: PLAINTEXT


def client_settings(settings: Settings) -> dict[str, str]:
    """The librdkafka settings of the configured protocol; a SASL protocol without its user or password, or a CA
    file that is not there, is a ConfigError naming the variable."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    found: dict[str, str] = {"security.protocol": protocol}
    if protocol.startswith("SASL_"):
        password = settings.kafka_sasl_password.get_secret_value()
        for name, value in (("KAFKA_SASL_USERNAME", settings.kafka_sasl_username), ("KAFKA_SASL_PASSWORD", password)):
            if not value:
                raise ConfigError(
                    f"{ENV_PREFIX}{name}: must be set with {ENV_PREFIX}KAFKA_SECURITY_PROTOCOL={protocol}"
                )
        found.update(
            {
                "sasl.mechanism": settings.kafka_sasl_mechanism,
                "sasl.username": settings.kafka_sasl_username,
                "sasl.password": password,
            }
        )
    if protocol.endswith("SSL") and settings.kafka_ssl_ca_location:
        if not Path(settings.kafka_ssl_ca_location).is_file():
            raise ConfigError(f"{ENV_PREFIX}KAFKA_SSL_CA_LOCATION: no file at {settings.kafka_ssl_ca_location}")
        found["ssl.ca.location"] = settings.kafka_ssl_ca_location
    return found


# what a refused login looks like in librdkafka's error events, and the settings to look at
_REFUSALS = {
    confluent_kafka.KafkaError._AUTHENTICATION: "KAFKA_SASL_USERNAME / FLASHSALE_KAFKA_SASL_PASSWORD",
    confluent_kafka.KafkaError._SSL: "KAFKA_SSL_CA_LOCATION",
}


class LoginWatch:
    """An `error_cb` for a client's first contact: remembers whether Kafka refused the login (SASL credentials)
    or the TLS handshake (the CA), so a failure can say so instead of "broker transport failure"."""

    def __init__(self) -> None:
        self._refused: confluent_kafka.KafkaError | None = None

    def __call__(self, error: confluent_kafka.KafkaError) -> None:
        """librdkafka's error event (served by the client's poll)."""
        if self._refused is None and error.code() in _REFUSALS:
            self._refused = error

    def raise_if_refused(self, poll: Callable[[float], object]) -> None:
        """Serve the client's pending error events; a refused login is a ConfigError naming the settings."""
        poll(1.0)
        if self._refused is not None:
            raise ConfigError(f"{ENV_PREFIX}{_REFUSALS[self._refused.code()]}: Kafka refused: {self._refused.str()}")
