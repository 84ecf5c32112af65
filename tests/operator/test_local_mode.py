"""`flashsale sale apply -f` drives the operator's decisions against real Kafka and the real sales service, without
Kubernetes: the request topic through Kafka's admin API, CreateSale and PrepareSale, the local sales worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from confluent_kafka import admin as kafka_admin
from operator_harness import flashsale, spawn, stop
from waiting import eventually_sync

from flashsale.common import timeutil
from flashsale_api.v1 import sales_pb2, sales_pb2_grpc
from flashsale_tools.platform import kafka_broker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

S = 1000


def sale_command(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return spawn([sys.executable, "-m", "flashsale_tools.cli", "sale", *args], env, log)


def run_sale(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`flashsale sale <args>` run to its end, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "flashsale_tools.cli", "sale", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def local_env(kafka: kafka_broker.KafkaBroker, sales_services: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASHSALE_")}
    env.update(
        FLASHSALE_KAFKA_BOOTSTRAP=kafka.bootstrap_servers,
        FLASHSALE_SALES_ADDR=sales_services["sales"],
        FLASHSALE_OPERATOR_POLL_S="0.2",
        FLASHSALE_OPERATOR_STATS_INTERVAL_S="0.3",
    )
    return env


def read_status(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    status: dict[str, Any] = json.loads(path.read_text())["status"]
    return status


def test_a_manifest_runs_through_every_phase_on_the_local_platform(
    tmp_path: Path,
    local_env: dict[str, str],
    kafka: kafka_broker.KafkaBroker,
    sales_services: dict[str, str],
    product_id: str,
) -> None:
    name = f"local-{uuid.uuid4().hex[:6]}"
    start = timeutil.now_ms() + 5 * S
    manifest = flashsale(name, product_id, start, start + 4 * S, partitions=3, reserve=0)
    path = tmp_path / "flashsale.yaml"
    path.write_text(yaml.safe_dump(manifest))
    states = tmp_path / "state"
    state_file = states / f"flashsale.{name}.json"
    log = tmp_path / "apply.log"

    proc = sale_command(["apply", "-f", str(path), "--state-dir", str(states)], local_env, log)
    try:
        ready = eventually_sync(
            lambda: read_status(state_file),
            until=lambda status: status.get("phase") == "Ready",
            within_s=15,
            every_s=0.2,
            what=f"{name} Ready in its state file",
        )
        assert (ready["partitions"], ready["remaining"]) == (3, 100)
        topic = ready["topic"]
        admin = kafka_admin.AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
        assert len(admin.list_topics(timeout=10).topics[topic].partitions) == 3

        eventually_sync(
            lambda: read_status(state_file),
            until=lambda status: status.get("phase") == "Active",
            within_s=15,
            every_s=0.2,
            what=f"{name} Active in its state file",
        )
        with grpc.insecure_channel(sales_services["sales"]) as channel:
            sales = sales_pb2_grpc.SalesServiceStub(channel)
            for user in ("ann", "bob"):
                request = sales_pb2.PurchaseRequest(
                    sale_id=ready["saleId"], user_id=user, quantity=2, request_id=uuid.uuid4().hex, wait_ms=3000
                )
                assert sales.Purchase(request, timeout=10).outcome == sales_pb2.PURCHASE_OUTCOME_ACCEPTED
        assert proc.wait(timeout=20) == 0, log.read_text()
    finally:
        stop(proc)
    output = log.read_text()
    reasons = [line.split()[2] for line in output.splitlines() if line.split()[1:2] in (["Normal"], ["Warning"])]
    phases = [r for r in reasons if r in ("Pending", "Warming", "Ready", "SaleStarted", "SaleEnded")]
    assert phases == ["Pending", "Warming", "Ready", "SaleStarted", "SaleEnded"]
    for reason in ("SaleCreated", "TopicRequested", "LocalWorkers", "TopicReady", "Prepared"):
        assert reason in reasons
    assert f"flashsale {name}: Ended (sold 4 of 100)" in output
    ended = read_status(state_file)
    assert (ended["phase"], ended["sold"], ended["remaining"]) == ("Ended", 4, 96)

    # Applying again changes nothing: the status says Ended, no second sale is made.
    again = run_sale(["apply", "-f", str(path), "--state-dir", str(states)], local_env)
    assert again.returncode == 0, again.stderr
    assert f"flashsale {name}: Ended (sold 4 of 100)" in again.stdout
    with grpc.insecure_channel(sales_services["sales"]) as channel:
        listed = sales_pb2_grpc.SalesServiceStub(channel).ListSales(
            sales_pb2.ListSalesRequest(product_id=product_id), timeout=10
        )
    assert [s.sale_id for s in listed.sales] == [ended["saleId"]]

    deleted = run_sale(["delete", "-f", str(path), "--state-dir", str(states)], local_env)
    assert deleted.returncode == 0, deleted.stderr
    assert not state_file.exists()
    eventually_sync(
        lambda: topic not in admin.list_topics(timeout=10).topics,
        every_s=0.2,
        what=f"the request topic {topic} deleted",
    )


def test_a_sale_of_a_missing_product_fails_and_exits_1(tmp_path: Path, local_env: dict[str, str]) -> None:
    now = timeutil.now_ms()
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(flashsale("bad", "no-such-product", now + 60 * S, now + 120 * S)))
    result = run_sale(["apply", "-f", str(path), "--state-dir", str(tmp_path)], local_env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "CreateSaleRefused" in result.stdout
    assert "flashsale bad: Failed (CreateSale refused (NOT_FOUND): product_id: no such product)" in result.stdout


def test_a_file_that_is_no_flashsale_exits_2(tmp_path: Path, local_env: dict[str, str]) -> None:
    path = tmp_path / "pod.yaml"
    path.write_text("kind: Pod\nmetadata: {name: x}\n")
    result = run_sale(["apply", "-f", str(path)], local_env)
    assert result.returncode == 2
    assert "not a FlashSale manifest" in result.stderr


def test_an_invalid_spec_names_its_fields_exits_1_and_creates_nothing(
    tmp_path: Path, local_env: dict[str, str], sales_services: dict[str, str], product_id: str
) -> None:
    now = timeutil.now_ms()
    path = tmp_path / "invalid.yaml"
    path.write_text(yaml.safe_dump(flashsale("invalid", product_id, now + 60 * S, now + 120 * S, stock=0, reserve=-1)))
    result = run_sale(["apply", "-f", str(path), "--state-dir", str(tmp_path)], local_env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "InvalidSpec" in result.stdout
    assert "spec.stock: must be between 1 and" in result.stdout
    assert "spec.reserve: must be between 0 and" in result.stdout
    assert read_status(tmp_path / "flashsale.invalid.json")["phase"] == "Failed"
    with grpc.insecure_channel(sales_services["sales"]) as channel:
        listed = sales_pb2_grpc.SalesServiceStub(channel).ListSales(
            sales_pb2.ListSalesRequest(product_id=product_id), timeout=10
        )
    assert list(listed.sales) == []
