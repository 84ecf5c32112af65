"""The front-door benchmark's pure figures: fairness inversions across every partition."""

from __future__ import annotations

from flashsale_tools.bench import front_door


def _a(sent_ms: float, outcome: str) -> front_door.Answered:
    return front_door.Answered(sent_ms, 409 if outcome != "ACCEPTED" else 201, outcome, 1.0)


def test_a_sold_out_request_sent_more_than_the_window_before_an_accepted_one_is_an_inversion() -> None:
    answers = [_a(0, "SOLD_OUT"), _a(50, "SOLD_OUT"), _a(100, "ACCEPTED"), _a(120, "SOLD_OUT"), _a(150, "ACCEPTED")]
    assert front_door.inversions(answers) == 1  # only the one at 0 ms: 150 ms before the last acceptance
    assert front_door.inversions(answers, window_ms=10) == 3  # 0, 50 and 120 are all over 10 ms before 150


def test_other_rejections_and_a_sale_with_no_acceptance_count_nothing() -> None:
    assert front_door.inversions([_a(0, "LIMIT_EXCEEDED"), _a(500, "ACCEPTED")]) == 0
    assert front_door.inversions([_a(0, "SOLD_OUT"), _a(500, "SOLD_OUT")]) == 0
