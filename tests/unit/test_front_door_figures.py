"""The front-door benchmark's pure figures: fairness inversions across every partition, vegeta's targets and results."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flashsale_tools.bench import front_door, profiles, runner, vegeta_client


def _a(sent_ms: float, outcome: str) -> front_door.Answered:
    return front_door.Answered(sent_ms, 409 if outcome != "ACCEPTED" else 201, outcome, 1.0)


def test_a_sold_out_request_sent_more_than_the_window_before_an_accepted_one_is_an_inversion() -> None:
    answers = [_a(0, "SOLD_OUT"), _a(50, "SOLD_OUT"), _a(100, "ACCEPTED"), _a(120, "SOLD_OUT"), _a(150, "ACCEPTED")]
    assert front_door.inversions(answers) == 1  # only the one at 0 ms: 150 ms before the last acceptance
    assert front_door.inversions(answers, window_ms=10) == 3  # 0, 50 and 120 are all over 10 ms before 150


def test_other_rejections_and_a_sale_with_no_acceptance_count_nothing() -> None:
    assert front_door.inversions([_a(0, "LIMIT_EXCEEDED"), _a(500, "ACCEPTED")]) == 0
    assert front_door.inversions([_a(0, "SOLD_OUT"), _a(500, "SOLD_OUT")]) == 0


def test_a_profile_summary_ranks_the_functions_on_top_of_the_stacks(tmp_path: Path) -> None:
    collapsed = tmp_path / "gateway.collapsed"
    collapsed.write_text(
        "main (a.py:1);serve (a.py:9);parse (b.py:3) 30\n"
        "main (a.py:1);serve (a.py:9);verify (c.py:7) 50\n"
        "main (a.py:1);verify (c.py:7) 20\n"
    )
    assert profiles.top_functions(collapsed) == [("verify (c.py:7)", 70.0), ("parse (b.py:3)", 30.0)]
    text = profiles.summary({"gateway": collapsed}, {"gateway": 812.4})
    head = ["gateway: 812 µs CPU per decision (gateway.collapsed)", "   70.0%  verify (c.py:7)"]
    assert text.splitlines()[:2] == head


def test_vegeta_targets_carry_each_purchases_own_body_and_token() -> None:
    lines = vegeta_client.targets("http://gw", [("/v1/p", {"request_id": "r1"}, {"Authorization": "Bearer a"})])
    target = json.loads(lines)
    assert target["url"] == "http://gw/v1/p"
    assert json.loads(base64.b64decode(target["body"])) == {"request_id": "r1"}
    assert target["header"] == {"Authorization": ["Bearer a"], "Content-Type": ["application/json"]}


def test_vegeta_results_become_answers_in_send_order_with_their_outcome() -> None:
    def line(stamp: str, code: int, body: bytes) -> str:
        encoded = base64.b64encode(body).decode()
        return json.dumps({"timestamp": stamp, "code": code, "latency": 2_500_000, "body": encoded, "url": "http://gw"})

    answers = vegeta_client.parse(
        [
            line("2026-12-02T10:00:00.250000001Z", 409, b'{"outcome":"SOLD_OUT"}'),
            line("2026-12-02T10:00:00.1234567+00:00", 201, b'{"outcome":"ACCEPTED"}'),
            line("2026-12-02T10:00:01Z", 0, b""),
            '{"timestamp": "2026-12-02T10:00:02Z", "code": 0, "latency": 0, "url": "", "error": "no targets"}',
            "",
        ]
    )
    assert [(a.status, a.outcome) for a in answers] == [(201, "ACCEPTED"), (409, "SOLD_OUT"), (0, "")]
    assert answers[1].sent_ms - answers[0].sent_ms == pytest.approx(126.5433, abs=1e-3)
    assert answers[0].latency_ms == 2.5


def test_the_rate_sent_is_measured_from_the_first_send_to_the_last() -> None:
    assert front_door.sent_per_s([_a(0, "SOLD_OUT"), _a(500, "SOLD_OUT"), _a(1000, "ACCEPTED")]) == 2.0
    assert front_door.sent_per_s([_a(0, "SOLD_OUT")]) is None


def test_idle_cpu_tells_a_spinning_process_from_a_sleeping_one() -> None:
    spinning = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    sleeping = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.3)  # both past their start-up
        idle = asyncio.run(front_door.idle_cpu({"spinning": spinning.pid, "sleeping": sleeping.pid}, seconds=1.0))
    finally:
        for child in (spinning, sleeping):
            child.kill()
            child.wait()
    assert idle["sleeping"] < 5 < idle["spinning"] <= 105, idle


def test_platform_settings_for_the_bench_are_flashsale_pairs() -> None:
    pairs = ["FLASHSALE_KAFKA_EVENT_BATCH_WAIT_MS=0", "FLASHSALE_LOG_LEVEL=INFO"]
    assert runner.platform_env(pairs) == (("FLASHSALE_KAFKA_EVENT_BATCH_WAIT_MS", "0"), ("FLASHSALE_LOG_LEVEL", "INFO"))
    for bad in ("FLASHSALE_LOG_LEVEL", "PATH=/bin"):
        with pytest.raises(ValueError, match="--platform-env"):
            runner.platform_env([bad])
