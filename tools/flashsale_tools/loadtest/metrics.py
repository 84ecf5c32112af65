"""The load test's arithmetic (pure): rates, latency percentiles and per-second series.

Latency is request→decision: the decision's `decided_at` (the sales worker's clock, epoch ms) minus the
time the request id was first sent (the load generator's clock — the same machine's wall clock).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import types
from collections.abc import Iterable, Mapping, Sequence

ACCEPTED = "accepted"


@dataclasses.dataclass(frozen=True)
class Decided:
    """A stored decision: its outcome, when it was decided and when its request reached the broker."""

    request_id: str
    outcome: str
    decided_at: int
    arrived_at: int


@dataclasses.dataclass(frozen=True)
class Bucket:
    """One slice of the run (`start_s` after the first send): rates of sends, decisions made in it and accepted
    ones (per second), and the latency p50/p99 of the decisions made in it."""

    start_s: float
    sent_per_s: float
    decided_per_s: float
    accepted_per_s: float
    p50_ms: float | None
    p99_ms: float | None


@dataclasses.dataclass(frozen=True)
class Summary:
    """Figures of one run; rates are per second of wall time since the first send (to the last send, decision
    or accepted decision); latencies in ms."""

    sends: int
    requests: int
    decided: int
    undecided: int
    accepted: int
    outcomes: Mapping[str, int]
    offered_per_s: float
    decided_per_s: float
    accepted_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    queue_p50_ms: float
    queue_p99_ms: float
    max_stall_ms: float
    bucket_ms: int
    series: tuple[Bucket, ...]


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank q-th percentile (0 < q ≤ 100) of values; 0.0 for no values."""
    if not 0 < q <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {q}")
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return float(ordered[rank - 1])


def rate(count: int, start_ms: int, end_ms: int) -> float:
    """count events per second between start_ms and end_ms (at least 1 ms apart)."""
    return count * 1000.0 / max(1, end_ms - start_ms)


def max_stall_ms(waits: Iterable[tuple[int, int]]) -> float:
    """The longest time with a request waiting and no decision made, from each decided request's (waiting since,
    decided at), epoch ms; 0.0 for none.

    Between two successive decision times d and d' nothing was decided; a request was waiting there from the
    earliest ``since`` among the requests decided at d' or later, so that gap stalled for d' - max(d, that since).
    Before the first decision the stall starts at the first request's ``since``."""
    ordered = sorted(waits, key=lambda wait: wait[1])
    if not ordered:
        return 0.0
    earliest_waiting = [0] * len(ordered)  # earliest `since` among the requests from this one on
    running = ordered[-1][0]
    for i in range(len(ordered) - 1, -1, -1):
        running = min(running, ordered[i][0])
        earliest_waiting[i] = running
    longest, previous = 0, None
    for i, (_since, decided_at) in enumerate(ordered):
        start = earliest_waiting[i] if previous is None else max(previous, earliest_waiting[i])
        longest = max(longest, decided_at - start)
        previous = decided_at
    return float(longest)


def bucket_ms_for(span_ms: int) -> int:
    """The series' bucket width: 100 ms for runs up to 20 s (a spike), 250 ms up to 60 s, else 1 s."""
    if span_ms <= 20_000:
        return 100
    if span_ms <= 60_000:
        return 250
    return 1_000


def series(
    send_times: Sequence[int], decided: Sequence[tuple[Decided, float]], start_ms: int, bucket_ms: int
) -> tuple[Bucket, ...]:
    """Per bucket of bucket_ms since start_ms: send, decision and acceptance rates, and the latency p50/p99 of
    the decisions made in the bucket (None without any); a decision counts in the bucket of its decided_at."""
    if bucket_ms < 1:
        raise ValueError(f"bucket_ms must be positive, got {bucket_ms}")
    sent = collections.Counter(max(0, (t - start_ms) // bucket_ms) for t in send_times)
    latencies: dict[int, list[float]] = collections.defaultdict(list)
    accepted: collections.Counter[int] = collections.Counter()
    for decision, latency in decided:
        slot = max(0, (decision.decided_at - start_ms) // bucket_ms)
        latencies[slot].append(latency)
        if decision.outcome == ACCEPTED:
            accepted[slot] += 1
    last = max([*sent, *latencies], default=-1)
    per_s = 1000.0 / bucket_ms
    return tuple(
        Bucket(
            start_s=slot * bucket_ms / 1000.0,
            sent_per_s=sent.get(slot, 0) * per_s,
            decided_per_s=len(latencies.get(slot, ())) * per_s,
            accepted_per_s=accepted.get(slot, 0) * per_s,
            p50_ms=percentile(latencies[slot], 50) if slot in latencies else None,
            p99_ms=percentile(latencies[slot], 99) if slot in latencies else None,
        )
        for slot in range(last + 1)
    )


def summarize(send_times: Sequence[int], first_sent: Mapping[str, int], decisions: Iterable[Decided]) -> Summary:
    """The run's figures from every send time, each request id's first send time, and the stored decisions.

    Decisions of request ids that were not sent are ignored; sent ids without a decision are `undecided` (and
    out of `max_stall_ms`, which counts a request waiting from its first send).
    """
    mine = [d for d in decisions if d.request_id in first_sent]
    timed = [(d, float(max(0, d.decided_at - first_sent[d.request_id]))) for d in mine]
    latencies = [latency for _, latency in timed]
    queueing = [float(max(0, d.decided_at - d.arrived_at)) for d in mine]
    start = min(send_times, default=0)
    accepted = [d for d in mine if d.outcome == ACCEPTED]
    last_send = max(send_times, default=start)
    last_decided = max((d.decided_at for d in mine), default=start)
    bucket_ms = bucket_ms_for(max(last_send, last_decided) - start)
    return Summary(
        sends=len(send_times),
        requests=len(first_sent),
        decided=len(mine),
        undecided=len(first_sent) - len(mine),
        accepted=len(accepted),
        outcomes=types.MappingProxyType(dict(sorted(collections.Counter(d.outcome for d in mine).items()))),
        offered_per_s=rate(len(send_times), start, last_send) if send_times else 0.0,
        decided_per_s=rate(len(mine), start, last_decided) if mine else 0.0,
        accepted_per_s=(rate(len(accepted), start, max(d.decided_at for d in accepted)) if accepted else 0.0),
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        max_ms=max(latencies, default=0.0),
        queue_p50_ms=percentile(queueing, 50),
        queue_p99_ms=percentile(queueing, 99),
        max_stall_ms=max_stall_ms((first_sent[d.request_id], d.decided_at) for d in mine),
        bucket_ms=bucket_ms,
        series=series(send_times, timed, start, bucket_ms),
    )
