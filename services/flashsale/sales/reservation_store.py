"""SQL of what buyers hold: reservations, one per accepted decision. What a user holds in a sale is the sum of
their reservations not released (an index by sale and user finds them)."""

from __future__ import annotations

from collections.abc import Sequence

from flashsale.common import database
from flashsale.sales import domain, sql

FIELDS = (
    "reservation_id",
    "request_id",
    "sale_id",
    "user_id",
    "quantity",
    "status",
    "created_at",
    "updated_at",
    "partition",
)
Row = tuple[str, str, str, str, int, str, int, int, int]  # FIELDS, in order


def insert(tx: database.Tx, dialect: str, rows: Sequence[Row], bulk: bool) -> None:
    """Store reservations: by COPY on PostgreSQL when `bulk` (database.Conflict on a duplicate), else row by row
    skipping duplicates."""
    if dialect == "postgres" and bulk:
        tx.copy_rows("reservations", FIELDS, rows)
        return
    tx.executemany(
        f"INSERT INTO reservations ({', '.join(FIELDS)}) VALUES ({sql.marks(len(FIELDS))}) ON CONFLICT DO NOTHING",
        rows,
    )


def held(tx: database.Tx, dialect: str, sale_id: str, users: Sequence[str]) -> dict[str, int]:
    """Units each of these users holds in the sale (reserved or confirmed)."""
    released = domain.ReservationStatus.RELEASED.value
    if dialect == "postgres":
        rows = tx.fetchall(
            "SELECT user_id, SUM(quantity) FROM reservations "
            f"WHERE sale_id = ? AND user_id = ANY({sql.TEXTS}) AND status <> ? GROUP BY user_id",
            (sale_id, sql.texts(users), released),
        )
        return {str(u): int(q) for u, q in rows}
    found: dict[str, int] = {}
    for chunk in sql.chunks(users):
        rows = tx.fetchall(
            "SELECT user_id, SUM(quantity) FROM reservations "
            f"WHERE sale_id = ? AND user_id IN ({sql.marks(len(chunk))}) AND status <> ? GROUP BY user_id",
            (sale_id, *chunk, released),
        )
        found.update({str(u): int(q) for u, q in rows})
    return found


def mark_released(tx: database.Tx, reservation_id: str, reason: str, now: int) -> tuple[str, str, int, int] | None:
    """Move a still-reserved reservation to released; its (sale_id, user_id, quantity, partition), or None."""
    row = tx.fetchone(
        "UPDATE reservations SET status = ?, release_reason = ?, updated_at = ? "
        "WHERE reservation_id = ? AND status = ? RETURNING sale_id, user_id, quantity, partition",
        (
            domain.ReservationStatus.RELEASED.value,
            reason,
            now,
            reservation_id,
            domain.ReservationStatus.RESERVED.value,
        ),
    )
    return (str(row[0]), str(row[1]), int(row[2]), int(row[3])) if row else None


def mark_confirmed(tx: database.Tx, reservation_id: str, now: int) -> bool:
    """Move a still-reserved reservation to confirmed (its order was paid)."""
    changed = tx.execute(
        "UPDATE reservations SET status = ?, updated_at = ? WHERE reservation_id = ? AND status = ?",
        (
            domain.ReservationStatus.CONFIRMED.value,
            now,
            reservation_id,
            domain.ReservationStatus.RESERVED.value,
        ),
    )
    return changed == 1


def status(tx: database.Tx, reservation_id: str) -> domain.ReservationStatus | None:
    """The status of a reservation, or None when it is unknown."""
    row = tx.fetchone("SELECT status FROM reservations WHERE reservation_id = ?", (reservation_id,))
    return domain.ReservationStatus(row[0]) if row else None


def count(tx: database.Tx, sale_id: str) -> int:
    """Reservations of a sale, whatever their status (one per accepted decision)."""
    row = tx.fetchone("SELECT COUNT(*) FROM reservations WHERE sale_id = ?", (sale_id,))
    return int(row[0]) if row else 0


def totals(tx: database.Tx, sale_id: str) -> tuple[int, int]:
    """(held, released) units of a sale: reserved or confirmed, and given back."""
    row = tx.fetchone(
        "SELECT COALESCE(SUM(CASE WHEN status <> ? THEN quantity ELSE 0 END), 0), "
        "COALESCE(SUM(CASE WHEN status = ? THEN quantity ELSE 0 END), 0) FROM reservations WHERE sale_id = ?",
        (domain.ReservationStatus.RELEASED.value, domain.ReservationStatus.RELEASED.value, sale_id),
    )
    return (int(row[0]), int(row[1])) if row else (0, 0)
