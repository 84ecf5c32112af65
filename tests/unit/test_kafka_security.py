"""The librdkafka settings of each FLASHSALE_KAFKA_SECURITY_PROTOCOL, and the settings it refuses, named."""

from __future__ import annotations

from pathlib import Path

import pytest

from flashsale.common import kafka_security
from flashsale.common.settings import ConfigError, Settings


def _settings(**fields: object) -> Settings:
    return Settings.model_validate(fields)


def test_plaintext_adds_nothing() -> None:
    assert kafka_security.client_settings(_settings()) == {}


def test_sasl_ssl_logs_in_with_the_user_and_trusts_the_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    found = kafka_security.client_settings(
        _settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_username="flashsale",
            kafka_sasl_password="pw",
            kafka_ssl_ca_location=str(ca),
        )
    )
    assert found == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "flashsale",
        "sasl.password": "pw",
        "ssl.ca.location": str(ca),
    }


def test_ssl_without_a_ca_trusts_the_systems() -> None:
    assert kafka_security.client_settings(_settings(kafka_security_protocol="SSL")) == {"security.protocol": "SSL"}


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"kafka_sasl_password": "pw"}, "FLASHSALE_KAFKA_SASL_USERNAME"),
        ({"kafka_sasl_username": "flashsale"}, "FLASHSALE_KAFKA_SASL_PASSWORD"),
        (
            {"kafka_sasl_username": "u", "kafka_sasl_password": "pw", "kafka_ssl_ca_location": "/nowhere/ca.crt"},
            "FLASHSALE_KAFKA_SSL_CA_LOCATION",
        ),
    ],
)
def test_a_sasl_login_without_what_it_needs_is_refused_naming_it(fields: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError) as refused:
        kafka_security.client_settings(_settings(kafka_security_protocol="SASL_SSL", **fields))
    assert str(refused.value).startswith(f"{named}: "), refused.value
