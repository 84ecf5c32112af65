"""SQL of the decisions table: the first decision of every request id, with where it sat in the log."""

from __future__ import annotations

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


def any_for_sale(tx: database.Tx, sale_id: str) -> bool:
    """True once a request of the sale was decided."""
    return tx.fetchone("SELECT 1 FROM decisions WHERE sale_id = ? LIMIT 1", (sale_id,)) is not None


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


def insert(tx: database.Tx, dialect: str, rows: Sequence[Row], bulk: bool) -> None:
    """Store decisions: by COPY on PostgreSQL when `bulk` (database.Conflict when a request id has a row
    already, which spoils the transaction), else row by row skipping request ids decided already."""
    if dialect == "postgres" and bulk:
        tx.copy_rows("decisions", FIELDS, rows)
        return
    tx.executemany(
        f"INSERT INTO decisions ({', '.join(FIELDS)}) VALUES ({sql.marks(len(FIELDS))}) "
        "ON CONFLICT (request_id) DO NOTHING",
        rows,
    )


def between(
    tx: database.Tx, sale_id: str, partition: int, start: int, end: int
) -> list[tuple[str, str, int, str, str, int]]:
    """(request_id, user_id, quantity, outcome, reservation_id, decided_at) decided from log offsets [start, end)."""
    rows = tx.fetchall(
        "SELECT request_id, user_id, quantity, outcome, reservation_id, decided_at FROM decisions "
        "WHERE sale_id = ? AND partition = ? AND log_offset >= ? AND log_offset < ? ORDER BY log_offset",
        (sale_id, partition, start, end),
    )
    return [(str(a), str(b), int(c), str(d), str(e), int(f)) for a, b, c, d, e, f in rows]


def counts(tx: database.Tx, sale_id: str) -> tuple[int, int]:
    """(accepted, rejected) requests of a sale."""
    row = tx.fetchone(
        "SELECT COALESCE(SUM(CASE WHEN outcome = ? THEN 1 ELSE 0 END), 0), COUNT(*) FROM decisions WHERE sale_id = ?",
        (domain.Outcome.ACCEPTED.value, sale_id),
    )
    accepted, total = (int(row[0]), int(row[1])) if row else (0, 0)
    return accepted, total - accepted
