"""The FlashSale operator on a real API server, with the real sales service: the whole life of a sale, a bad spec,
a delete, a restart in the middle of Warming, and what `kubectl get` and `kubectl describe` show.

The test plays the controllers envtest lacks: the Strimzi Topic Operator (it marks KafkaTopics Ready) and the sales
Deployment's controller (nothing runs its pods; its spec.replicas is what the operator set).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import grpc
import httpx
import pytest
from operator_harness import (
    NAMESPACE,
    REPO,
    Kubectl,
    OperatorProcess,
    flashsale,
    mark_topic_ready,
    owned_topics,
    replicas,
)
from waiting import eventually_sync

from flashsale.common import timeutil
from flashsale_api.v1 import sales_pb2, sales_pb2_grpc
from flashsale_operator import workers
from flashsale_tools.platform import envtest

pytestmark = [pytest.mark.operator, pytest.mark.timeout(envtest.BUILD_TIMEOUT_S + 2 * envtest.UP_TIMEOUT_S)]

S = 1000


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def status_of(kubectl: Kubectl, name: str) -> dict[str, Any]:
    found = kubectl.get("flashsale", name)
    assert found is not None, f"FlashSale {name} is gone"
    status: dict[str, Any] = found.get("status") or {}
    return status


def wait_phase(
    kubectl: Kubectl, operator: OperatorProcess, name: str, phase: str, timeout: float = 30.0
) -> dict[str, Any]:
    try:
        return eventually_sync(
            lambda: status_of(kubectl, name),
            until=lambda status: status.get("phase") == phase,
            within_s=timeout,
            every_s=0.2,
            what=f"{name} to be {phase}",
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; status {status_of(kubectl, name)}\noperator log:\n{operator.tail()}") from None


def wait_topic(kubectl: Kubectl, name: str) -> dict[str, Any]:
    topics = eventually_sync(lambda: owned_topics(kubectl, name), every_s=0.2, what=f"the KafkaTopic of {name}")
    assert len(topics) == 1
    return topics[0]


def event_reasons(kubectl: Kubectl, name: str) -> list[str]:
    listed = kubectl.json("get", "events", "-n", NAMESPACE, "--field-selector", f"involvedObject.name={name}")
    return [e["reason"] for e in listed["items"]]


def sales_of(address: str, product_id: str) -> list[sales_pb2.Sale]:
    with grpc.insecure_channel(address) as channel:
        listed = sales_pb2_grpc.SalesServiceStub(channel).ListSales(
            sales_pb2.ListSalesRequest(product_id=product_id), timeout=10
        )
    return list(listed.sales)


class PhaseRecorder:
    """Watches a FlashSale's phase in the background and keeps every distinct phase seen, in order."""

    def __init__(self, kubectl: Kubectl, name: str) -> None:
        self._kubectl = kubectl
        self._name = name
        self.phases: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        found = self._kubectl.get("flashsale", self._name)
        phase = ((found or {}).get("status") or {}).get("phase")
        if phase and (not self.phases or self.phases[-1] != phase):
            self.phases.append(phase)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(0.1)

    def __enter__(self) -> PhaseRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()  # the phase it has now: a last change seen by the test may fall after the last poll


def test_the_invalid_example_is_refused_by_the_api_server(kubectl: Kubectl) -> None:
    refused = kubectl.run("apply", "-f", str(REPO / "k8s" / "examples" / "flashsale-invalid.yaml"), check=False)
    assert refused.returncode != 0
    for field in ("spec.stock", "spec.perUserLimit", "spec.partitions", "spec.endsAt: Invalid value: endsAt must be"):
        assert field in refused.stderr
    assert kubectl.get("flashsale", "broken-sale") is None


def test_a_sale_lives_through_every_phase(
    kubectl: Kubectl, operator: OperatorProcess, sales_services: dict[str, str], product_id: str
) -> None:
    operator.ensure_running()
    name = unique("drop")
    assert replicas(kubectl) == 1
    with PhaseRecorder(kubectl, name) as recorder:
        start = timeutil.now_ms() + 9 * S
        warm_at = start - 4 * S
        manifest = flashsale(name, product_id, start, start + 6 * S, leadTimeSeconds=4, partitions=4, reserve=0)
        kubectl.apply(manifest)
        topic = wait_topic(kubectl, name)
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "flashsale"
        assert topic["spec"]["partitions"] == 4
        assert topic["spec"]["config"] == {"message.timestamp.type": "LogAppendTime"}
        assert topic["metadata"]["ownerReferences"][0]["name"] == name
        wait_phase(kubectl, operator, name, "Warming")
        mark_topic_ready(kubectl, topic)

        ready = wait_phase(kubectl, operator, name, "Ready")
        assert (ready["partitions"], ready["stock"], ready["remaining"]) == (4, 100, 100)
        sale_id = ready["saleId"]
        assert topic["metadata"]["name"] == f"flashsale.sale.{sale_id}.requests"
        if timeutil.now_ms() < warm_at - 500:
            assert replicas(kubectl) == 1, "not scaled before start minus the lead time"
        eventually_sync(
            lambda: replicas(kubectl),
            until=lambda n: n == 4,
            within_s=15,
            every_s=0.2,
            what="the workers scaled to cover 4 partitions",
        )
        scaled_at = timeutil.now_ms()
        assert warm_at - 1 * S <= scaled_at < start, "the workers are scaled at start minus the lead time"
        deployment = kubectl.get("deployment", "flashsale-sales")
        assert deployment is not None
        lease = workers.decode(deployment["metadata"]["annotations"][workers.ANNOTATION])
        assert lease == workers.WorkerLease(1, ((f"{NAMESPACE}/{name}", 4),))

        wait_phase(kubectl, operator, name, "Active", timeout=15)
        with grpc.insecure_channel(sales_services["sales"]) as channel:
            sales = sales_pb2_grpc.SalesServiceStub(channel)
            for user in ("ann", "bob", "cid"):
                request = sales_pb2.PurchaseRequest(
                    sale_id=sale_id, user_id=user, quantity=1, request_id=uuid.uuid4().hex, wait_ms=3000
                )
                decision = sales.Purchase(request, timeout=10)
                assert decision.outcome == sales_pb2.PURCHASE_OUTCOME_ACCEPTED
        eventually_sync(
            lambda: status_of(kubectl, name),
            until=lambda status: status.get("sold") == 3,
            within_s=5,
            every_s=0.2,
            what="sold 3 in the status",
        )
        columns = kubectl.run("get", "flashsales", "-n", NAMESPACE, name).stdout.splitlines()
        assert columns[0].split() == ["NAME", "PHASE", "SOLD", "REMAINING", "STARTS", "AGE"]
        assert columns[1].split()[:5] == [name, "Active", "3", "97", manifest["spec"]["startsAt"]]

        ended = wait_phase(kubectl, operator, name, "Ended", timeout=15)
    assert recorder.phases == ["Warming", "Ready", "Active", "Ended"] or recorder.phases == [
        "Pending",
        "Warming",
        "Ready",
        "Active",
        "Ended",
    ]
    assert (ended["sold"], ended["remaining"], ended["message"]) == (3, 97, "sold 3 of 100")
    assert ended["scaling"] == {
        "deployment": f"{NAMESPACE}/flashsale-sales",
        "previousReplicas": 1,
        "targetReplicas": 4,
        "held": False,
        "restored": True,
    }
    eventually_sync(
        lambda: replicas(kubectl), until=lambda n: n == 1, every_s=0.2, what="the workers back to 1 replica"
    )
    deployment = kubectl.get("deployment", "flashsale-sales")
    assert deployment is not None
    assert workers.ANNOTATION not in (deployment["metadata"].get("annotations") or {})

    reasons = event_reasons(kubectl, name)
    for reason in ("Pending", "SaleCreated", "TopicRequested", "Warming", "TopicReady", "Prepared", "Ready"):
        assert reason in reasons
    for reason in ("Scaled", "SaleStarted", "SaleEnded", "Restored"):
        assert reason in reasons
    described = kubectl.run("describe", "flashsale", name, "-n", NAMESPACE).stdout
    assert "sold 3 of 100" in described
    assert "scaled 1 → 4 replicas" in described
    assert "scaled 4 → 1 replicas after the sale" in described
    assert len(sales_of(sales_services["sales"], product_id)) == 1


@pytest.mark.parametrize(
    ("case", "reason", "message"),
    [
        ("missing-product", "CreateSaleRefused", "CreateSale refused (NOT_FOUND): product_id: no such product"),
        ("window-over", "WindowOver", "nothing was created"),
    ],
)
def test_a_bad_spec_fails_with_the_reason_and_creates_nothing(
    kubectl: Kubectl,
    operator: OperatorProcess,
    sales_services: dict[str, str],
    product_id: str,
    case: str,
    reason: str,
    message: str,
) -> None:
    operator.ensure_running()
    name = unique(case)
    now = timeutil.now_ms()
    if case == "missing-product":
        product_id = "no-such-product"
        manifest = flashsale(name, product_id, now + 60 * S, now + 120 * S)
    else:
        manifest = flashsale(name, product_id, now - 120 * S, now - 60 * S)
    kubectl.apply(manifest)
    failed = wait_phase(kubectl, operator, name, "Failed")
    assert failed["reason"] == reason
    assert message in failed["message"]
    assert not failed.get("saleId")
    time.sleep(1.0)  # had anything been created, it would be by now
    assert owned_topics(kubectl, name) == []
    assert sales_of(sales_services["sales"], product_id) == []
    assert replicas(kubectl) == 1
    events = kubectl.json("get", "events", "-n", NAMESPACE, "--field-selector", f"involvedObject.name={name}")["items"]
    assert {"type": "Warning", "reason": reason} in [{"type": e["type"], "reason": e["reason"]} for e in events]
    assert reason in kubectl.run("describe", "flashsale", name, "-n", NAMESPACE).stdout
    row = kubectl.run("get", "fsale", name, "-n", NAMESPACE, "--no-headers").stdout.split()
    assert row[:2] == [name, "Failed"]
    kubectl.run("delete", "flashsale", name, "-n", NAMESPACE, "--timeout=30s")


def test_delete_removes_the_topic_gives_the_workers_back_and_releases_the_finalizer(
    kubectl: Kubectl, operator: OperatorProcess, product_id: str
) -> None:
    operator.ensure_running()
    name = unique("deleted")
    start = timeutil.now_ms() + 3600 * S
    kubectl.apply(flashsale(name, product_id, start, start + 600 * S, leadTimeSeconds=7200, partitions=2))
    mark_topic_ready(kubectl, wait_topic(kubectl, name))
    wait_phase(kubectl, operator, name, "Ready")
    eventually_sync(
        lambda: replicas(kubectl), until=lambda n: n == 2, every_s=0.2, what="the workers scaled for 2 partitions"
    )
    found = kubectl.get("flashsale", name)
    assert found is not None
    assert "flashsale.io/operator" in found["metadata"]["finalizers"]

    kubectl.run("delete", "flashsale", name, "-n", NAMESPACE, "--timeout=30s")
    assert kubectl.get("flashsale", name) is None
    assert owned_topics(kubectl, name) == []
    assert replicas(kubectl) == 1
    deployment = kubectl.get("deployment", "flashsale-sales")
    assert deployment is not None
    assert workers.ANNOTATION not in (deployment["metadata"].get("annotations") or {})
    assert "Deleting" in event_reasons(kubectl, name)


def test_an_operator_restart_in_the_middle_of_warming_completes_the_sale(
    kubectl: Kubectl, operator: OperatorProcess, sales_services: dict[str, str], product_id: str
) -> None:
    operator.ensure_running()
    name = unique("restarted")
    start = timeutil.now_ms() + 10 * S
    kubectl.apply(flashsale(name, product_id, start, start + 4 * S, leadTimeSeconds=2, partitions=3))
    topic = wait_topic(kubectl, name)
    wait_phase(kubectl, operator, name, "Warming")
    operator.kill()
    warming = status_of(kubectl, name)  # read after the kill: the pass after the one that wrote Warming may have
    assert warming["phase"] == "Warming"  # written its own condition before the kill (it failed once in CI)

    mark_topic_ready(kubectl, topic)
    time.sleep(1.0)
    assert status_of(kubectl, name) == warming, "nothing moves while the operator is down"

    operator.start()
    ready = wait_phase(kubectl, operator, name, "Ready", timeout=20)
    assert ready["saleId"] == warming["saleId"]
    assert ready["partitions"] == 3
    wait_phase(kubectl, operator, name, "Active", timeout=20)
    ended = wait_phase(kubectl, operator, name, "Ended", timeout=20)
    assert ended["scaling"]["restored"] is True
    assert replicas(kubectl) == 1
    assert [s.sale_id for s in sales_of(sales_services["sales"], product_id)] == [warming["saleId"]]
    assert len(owned_topics(kubectl, name)) == 1


def test_the_operator_answers_its_liveness_probe(operator: OperatorProcess) -> None:
    operator.ensure_running()
    url = f"http://127.0.0.1:{operator.env['FLASHSALE_OPERATOR_HEALTH_PORT']}/healthz"
    deadline = time.monotonic() + 30
    while True:
        try:
            answer = httpx.get(url, timeout=2)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"no answer on {url}:\n{operator.tail()}"
            time.sleep(0.2)
    assert answer.status_code == 200, answer.text
