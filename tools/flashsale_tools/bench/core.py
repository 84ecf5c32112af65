"""What every benchmark mode shares: the workload, a mode's result, the environment, and count checks."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from flashsale_tools.platform import kafka_broker, postgres_server


class BenchError(RuntimeError):
    """A mode could not run, or its counters disagree with what it reported (a correctness failure)."""


@dataclasses.dataclass(frozen=True)
class Workload:
    """The one workload every mode runs: `purchases` attempts of `quantity` units by `users` users on `stock`.

    `concurrency` is the number of concurrent purchasers for the database modes, `redis_connections` the
    redis-benchmark clients, `in_flight` the gRPC requests in flight. Sized by default for 2 cores.
    Redis and the pipeline (c) run stock and purchases scaled up by the same factor to at least
    `redis_ceiling_requests` (the same accept/reject mix, long enough for redis-benchmark to reach the server's
    ceiling and for the pipeline's rate to be stable).
    """

    stock: int = 20_000
    users: int = 20_000
    purchases: int = 40_000
    quantity: int = 1
    concurrency: int = 16
    redis_connections: int = 50
    in_flight: int = 200
    redis_ceiling_requests: int = 400_000

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{field.name}: must be a positive integer, got {value!r}")
        if self.users > self.purchases:
            raise ValueError(f"users: must be at most purchases ({self.purchases}), got {self.users}")

    def user_of(self, index: int) -> str:
        """The user making purchase number `index` (users take turns, so each buys purchases/users times)."""
        return f"user-{index % self.users:07d}"

    @property
    def expected_accepted(self) -> int:
        """Purchases a correct design accepts: every one until the stock is gone."""
        return min(self.purchases, self.stock // self.quantity)


def scaled(workload: Workload, at_least: int) -> Workload:
    """The workload with stock, purchases and users multiplied by one factor to at least `at_least` purchases
    (the same accept/reject mix)."""
    factor = max(1, math.ceil(at_least / workload.purchases))
    return dataclasses.replace(
        workload, stock=workload.stock * factor, purchases=workload.purchases * factor, users=workload.users * factor
    )


@dataclasses.dataclass(frozen=True)
class ModeResult:
    """What one mode measured: attempts per second (accepted or rejected), p99 latency, oversold units."""

    rate_per_s: float
    p99_ms: float | None
    oversold: int
    attempts: int
    accepted: int | None = None
    notes: Mapping[str, object] = dataclasses.field(default_factory=dict)


Runner = Callable[[Workload, "BenchEnv"], Awaitable[ModeResult]]


@dataclasses.dataclass(frozen=True)
class Mode:
    """A registered mode: its letter in the issue (a … g) and `async def run(workload, env) -> ModeResult`."""

    letter: str
    run: Runner


class BenchEnv:
    """Shared, lazily started real parts for the modes of one run; stops what it started on close."""

    def __init__(
        self,
        work_dir: Path,
        postgres: postgres_server.PostgresServer | None = None,
        kafka: kafka_broker.KafkaBroker | None = None,
        profile_dir: Path | None = None,
        platform_env: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.work_dir = work_dir
        self.profile_dir = profile_dir  # where modes that profile their processes write what they saw
        self.platform_env = platform_env  # settings of the platform a mode starts (FLASHSALE_* name, value)
        self._postgres = postgres
        self._kafka = kafka
        self._stack = contextlib.ExitStack()

    def postgres(self) -> postgres_server.PostgresServer:
        """A running PostgreSQL 15 (stock config, fsync on), started on first use."""
        if self._postgres is None:
            server = postgres_server.PostgresServer(self.work_dir / "postgres")
            server.start()
            self._stack.callback(server.stop)
            self._postgres = server
        return self._postgres

    def fresh_database(self, prefix: str) -> str:
        """The DSN of a new empty database on `postgres()`."""
        return self.postgres().create_database(f"{prefix}_{uuid.uuid4().hex[:8]}")

    def kafka(self) -> kafka_broker.KafkaBroker:
        """A running single-node Kafka broker with its JVM at full speed (every JIT tier), started on first use."""
        if self._kafka is None:
            broker = kafka_broker.KafkaBroker(self.work_dir / "kafka", quick_start=False)
            broker.start()
            self._stack.callback(broker.stop)
            self._kafka = broker
        return self._kafka

    def close(self) -> None:
        """Stop every part this environment started, last started first."""
        self._stack.close()

    def __enter__(self) -> BenchEnv:
        """Return self."""
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close."""
        self.close()


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile, or None when there are no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def check_counts(workload: Workload, accepted: int, remaining: int) -> int:
    """Oversold units of a finished run; raises BenchError when the stock counter disagrees or stock was lost.

    `remaining` must equal stock - accepted * quantity (no lost update); when nothing is oversold every
    purchase must have been accepted until the stock ran out (no undersell).
    """
    sold = accepted * workload.quantity
    if remaining != workload.stock - sold:
        raise BenchError(f"stock counter is {remaining} after {accepted} accepted of stock {workload.stock}")
    oversold = max(0, sold - workload.stock)
    if oversold == 0 and accepted != workload.expected_accepted:
        raise BenchError(f"accepted {accepted}, expected {workload.expected_accepted} (stock left unsold)")
    return oversold
