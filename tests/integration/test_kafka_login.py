"""The services' Kafka clients over SASL_SSL with a SCRAM-SHA-512 user, as the chart connects them to a Strimzi
KafkaUser on the TLS listener: a real broker with a SASL_SSL listener and a certificate from a throwaway CA; the
sales service (its producer, request topics, worker and consumers) sells over it; a wrong password and a client
that does not trust the CA are refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_sales_service import buy, running, sale_request

from flashsale.common import kafka, kafka_security
from flashsale.common.settings import ConfigError, Settings
from flashsale_api.v1 import sales_pb2
from flashsale_tools.platform import certificates, kafka_broker

pytestmark = pytest.mark.integration

USER, PASSWORD = "flashsale", "scram-pass-0123456789"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[kafka_broker.KafkaBroker, Path]]:
    """A broker with a SASL_SSL listener knowing one SCRAM-SHA-512 user, and the CA that signed its certificate."""
    folder = tmp_path_factory.mktemp("secured-kafka")
    issued = certificates.issue(folder / "certs")
    listener = kafka_broker.SecuredListener(issued.keystore_pem, {USER: PASSWORD})
    with kafka_broker.KafkaBroker(folder / "broker", secured=listener) as broker:
        yield broker, issued.ca_pem


def _over_tls(base: Settings, broker: kafka_broker.KafkaBroker, ca: Path, **changes: object) -> Settings:
    fields: dict[str, object] = {
        "kafka_bootstrap": broker.secured_bootstrap_servers,
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_username": USER,
        "kafka_sasl_password": PASSWORD,
        "kafka_ssl_ca_location": str(ca),
    }
    return Settings.model_validate({**base.model_dump(), **fields, **changes})


async def test_the_sales_service_sells_over_sasl_ssl(
    base_settings: Settings, secured: tuple[kafka_broker.KafkaBroker, Path]
) -> None:
    broker, ca = secured
    async with running(_over_tls(base_settings, broker, ca)) as p:
        sale = await p.sales.CreateSale(sale_request(p.product_id, stock=1, per_user_limit=1))
        first = await p.sales.Purchase(buy(sale.sale_id, "ann"))
        second = await p.sales.Purchase(buy(sale.sale_id, "bob"))
    assert (first.outcome, second.outcome) == (
        sales_pb2.PURCHASE_OUTCOME_ACCEPTED,
        sales_pb2.PURCHASE_OUTCOME_SOLD_OUT,
    )


def _refusal(settings: Settings) -> str:
    with pytest.raises(ConfigError) as refused:
        kafka.ensure_topics(
            settings.kafka_bootstrap, ["flashsale.login-check"], 1, timeout=10,
            security=kafka_security.client_settings(settings),
        )  # fmt: skip
    return str(refused.value)


def test_a_wrong_password_is_refused(base_settings: Settings, secured: tuple[kafka_broker.KafkaBroker, Path]) -> None:
    broker, ca = secured
    said = _refusal(_over_tls(base_settings, broker, ca, kafka_sasl_password="not-the-password"))
    assert said.startswith("FLASHSALE_KAFKA_SASL_USERNAME / FLASHSALE_KAFKA_SASL_PASSWORD: Kafka refused:"), said
    assert "SASL authentication error" in said, said


def test_a_client_that_does_not_trust_the_cluster_ca_is_refused(
    base_settings: Settings, secured: tuple[kafka_broker.KafkaBroker, Path]
) -> None:
    broker, ca = secured
    said = _refusal(_over_tls(base_settings, broker, ca, kafka_ssl_ca_location=""))
    assert said.startswith("FLASHSALE_KAFKA_SSL_CA_LOCATION: Kafka refused:"), said
    assert "certificate verify failed" in said, said
