"""The report arithmetic counts what it claims to count."""

from flashsale_tools.demo import report


def _a(user: str, outcome: str, latency: float = 1.0, qty: int = 1) -> report.Attempt:
    return report.Attempt(user, f"r-{user}-{outcome}-{latency}", qty, outcome, latency)


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert report.percentile(values, 50) == 50.0
    assert report.percentile(values, 99) == 99.0
    assert report.percentile([], 99) == 0.0


def test_per_user_violations_counts_users_over_the_limit() -> None:
    attempts = [_a("ann", "ACCEPTED"), _a("ann", "ACCEPTED", 2.0), _a("bob", "ACCEPTED"), _a("cid", "SOLD_OUT")]
    assert report.per_user_violations(attempts, limit=1) == 1
    assert report.per_user_violations(attempts, limit=2) == 0


def test_oversold_seen_by_shoppers_or_by_the_server() -> None:
    attempts = [_a(f"u{i}", "ACCEPTED") for i in range(3)] + [_a("x", "SOLD_OUT"), _a("y", "ERROR")]
    ok = report.build_report(stock=3, limit=1, attempts=attempts, paid=2, expired=1, server_stats={"reserved": 3})
    assert (ok["sold"], ok["rejected"], ok["errors"], ok["oversold"]) == (3, 1, 1, 0)
    over = report.build_report(stock=2, limit=1, attempts=attempts, paid=0, expired=0, server_stats={})
    assert over["oversold"] == 1
    server_over = report.build_report(
        stock=3, limit=1, attempts=attempts, paid=0, expired=0, server_stats={"reserved": 5}
    )
    assert server_over["oversold"] == 2
