"""SQL of the decisions table (the first decision of every request id, with where it sat in the log) and of
decision_batches (one row per partition batch of a round: its log offsets and when it was decided, which is how a
batch's decisions are found again)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from flashsale.common import database
from flashsale.sales import domain, sql

FIELDS = (
    "request_id",
    "sale_id",
    "user_id",
    "quantity",
    "outcome",
    "reservation_id",
    "decided_at",
    "partition",
    "log_offset",
    "arrived_at",
)
Row = tuple[str, str, str, int, str, str, int, int, int, int]  # FIELDS, in order
_READ = "request_id, sale_id, user_id, quantity, outcome, reservation_id, decided_at"


def _decision(row: database.Row) -> domain.Decision:
    return domain.Decision(
        request_id=str(row[0]),
        sale_id=str(row[1]),
        user_id=str(row[2]),
        quantity=int(row[3]),
        outcome=domain.Outcome(row[4]),
        reservation_id=str(row[5]),
        decided_at=int(row[6]),
    )


def get(tx: database.Tx, request_id: str) -> domain.Decision | None:
    """The decision of a request id, or None."""
    row = tx.fetchone(f"SELECT {_READ} FROM decisions WHERE request_id = ?", (request_id,))
    return _decision(row) if row else None


def decided_ids(tx: database.Tx, dialect: str, request_ids: Sequence[str]) -> set[str]:
    """Which of these request ids have a decision already (of any sale)."""
    if dialect == "postgres":
        rows = tx.fetchall(
            f"SELECT request_id FROM decisions WHERE request_id = ANY({sql.TEXTS})", (sql.texts(request_ids),)
        )
        return {str(r[0]) for r in rows}
    found: set[str] = set()
    for chunk in sql.chunks(request_ids):
        rows = tx.fetchall(f"SELECT request_id FROM decisions WHERE request_id IN ({sql.marks(len(chunk))})", chunk)
        found.update(str(r[0]) for r in rows)
    return found


@dataclasses.dataclass(frozen=True)
class Batch:
    """A partition's batch of one round: the log offsets [start, end) it decided, and its decided_at."""

    partition: int
    start: int
    end: int
    decided_at: int


def insert(
    tx: database.Tx, dialect: str, sale_id: str, batches: Sequence[Batch], rows: Sequence[Row], bulk: bool
) -> None:
    """Store a round's decisions of a sale and its batches: by COPY on PostgreSQL when `bulk` (database.Conflict
    when a request id has a row already, which spoils the transaction), else row by row skipping request ids
    decided already."""
    tx.executemany(
        "INSERT INTO decision_batches (sale_id, partition, start_offset, end_offset, decided_at) "
        "VALUES (?, ?, ?, ?, ?)",
        [(sale_id, b.partition, b.start, b.end, b.decided_at) for b in batches],
    )
    if dialect == "postgres" and bulk:
        tx.copy_rows("decisions", FIELDS, rows)
        return
    tx.executemany(
        f"INSERT INTO decisions ({', '.join(FIELDS)}) VALUES ({sql.marks(len(FIELDS))}) ON CONFLICT DO NOTHING",
        rows,
    )


def between(
    tx: database.Tx, sale_id: str, partition: int, start: int, end: int
) -> list[tuple[str, str, int, str, str, int]]:
    """(request_id, user_id, quantity, outcome, reservation_id, decided_at) decided from log offsets [start, end),
    in log order: the batches that overlap the range say when they were decided, and that finds their rows."""
    times = [
        int(row[0])
        for row in tx.fetchall(
            "SELECT DISTINCT decided_at FROM decision_batches "
            "WHERE sale_id = ? AND partition = ? AND end_offset > ? AND start_offset < ?",
            (sale_id, partition, start, end),
        )
    ]
    found: list[database.Row] = []
    for chunk in range(0, len(times), sql.CHUNK):
        at = times[chunk : chunk + sql.CHUNK]
        found.extend(
            tx.fetchall(
                "SELECT request_id, user_id, quantity, outcome, reservation_id, decided_at, log_offset FROM decisions "
                f"WHERE decided_at IN ({sql.marks(len(at))}) AND sale_id = ? AND partition = ? "
                "AND log_offset >= ? AND log_offset < ?",
                (*at, sale_id, partition, start, end),
            )
        )
    found.sort(key=lambda row: int(row[6]))  # stable: a record's purchases keep the order they were stored in
    return [(str(a), str(b), int(c), str(d), str(e), int(f)) for a, b, c, d, e, f, _ in found]
