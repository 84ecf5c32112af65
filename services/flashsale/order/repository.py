"""Order tables and their SQL."""

from __future__ import annotations

from flashsale.common import database
from flashsale.order import domain

MIGRATIONS = [
    """
CREATE TABLE orders (
  order_id TEXT PRIMARY KEY,
  reservation_id TEXT NOT NULL UNIQUE,
  request_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  sale_id TEXT NOT NULL,
  product_id TEXT NOT NULL,
  quantity INTEGER NOT NULL,
  amount_cents BIGINT NOT NULL,
  status TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  pay_by BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  payment_id TEXT NOT NULL
);
CREATE INDEX orders_by_user ON orders (user_id, created_at, order_id);
CREATE INDEX orders_pending ON orders (status, pay_by)
"""
]

_COLUMNS = (
    "order_id, reservation_id, request_id, user_id, sale_id, product_id, quantity, amount_cents, status, "
    "created_at, pay_by, updated_at, payment_id"
)


def _order(row: database.Row) -> domain.Order:
    return domain.Order(
        order_id=str(row[0]),
        reservation_id=str(row[1]),
        request_id=str(row[2]),
        user_id=str(row[3]),
        sale_id=str(row[4]),
        product_id=str(row[5]),
        quantity=int(row[6]),
        amount_cents=int(row[7]),
        status=domain.Status(str(row[8])),
        created_at=int(row[9]),
        pay_by=int(row[10]),
        updated_at=int(row[11]),
        payment_id=str(row[12]),
    )


def insert(tx: database.Tx, o: domain.Order) -> None:
    """Store a new order."""
    tx.execute(
        f"INSERT INTO orders ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            o.order_id,
            o.reservation_id,
            o.request_id,
            o.user_id,
            o.sale_id,
            o.product_id,
            o.quantity,
            o.amount_cents,
            o.status.value,
            o.created_at,
            o.pay_by,
            o.updated_at,
            o.payment_id,
        ),
    )


def get(tx: database.Tx, order_id: str) -> domain.Order | None:
    """One order, or None."""
    row = tx.fetchone(f"SELECT {_COLUMNS} FROM orders WHERE order_id = ?", (order_id,))
    return _order(row) if row else None


def reservation_exists(tx: database.Tx, reservation_id: str) -> bool:
    """True when an order was made for the reservation already."""
    return tx.fetchone("SELECT 1 FROM orders WHERE reservation_id = ?", (reservation_id,)) is not None


def list_for_user(
    tx: database.Tx, user_id: str, request_id: str, after: domain.Cursor | None, limit: int
) -> list[domain.Order]:
    """Up to limit orders of a user, newest first, after the cursor, optionally of one request."""
    where = ["user_id = ?"]
    params: list[object] = [user_id]
    if request_id:
        where.append("request_id = ?")
        params.append(request_id)
    if after is not None:
        where.append("(created_at < ? OR (created_at = ? AND order_id < ?))")
        params += [after.created_at, after.created_at, after.last_id]
    rows = tx.fetchall(
        f"SELECT {_COLUMNS} FROM orders WHERE {' AND '.join(where)} ORDER BY created_at DESC, order_id DESC LIMIT ?",
        (*params, limit),
    )
    return [_order(r) for r in rows]


def mark_paid(tx: database.Tx, order_id: str, payment_id: str, now: int) -> bool:
    """PENDING_PAYMENT → PAID unless the deadline passed or another change won; True when it happened."""
    changed = tx.execute(
        "UPDATE orders SET status = ?, payment_id = ?, updated_at = ? WHERE order_id = ? AND status = ? AND pay_by > ?",
        (domain.Status.PAID.value, payment_id, now, order_id, domain.Status.PENDING_PAYMENT.value, now),
    )
    return changed == 1


def mark_cancelled(tx: database.Tx, order_id: str, now: int) -> bool:
    """PENDING_PAYMENT → CANCELLED; True when it happened."""
    changed = tx.execute(
        "UPDATE orders SET status = ?, updated_at = ? WHERE order_id = ? AND status = ?",
        (domain.Status.CANCELLED.value, now, order_id, domain.Status.PENDING_PAYMENT.value),
    )
    return changed == 1


def overdue(tx: database.Tx, now: int, limit: int) -> list[domain.Order]:
    """Up to limit PENDING_PAYMENT orders whose deadline passed, oldest deadline first."""
    rows = tx.fetchall(
        f"SELECT {_COLUMNS} FROM orders WHERE status = ? AND pay_by <= ? ORDER BY pay_by, order_id LIMIT ?",
        (domain.Status.PENDING_PAYMENT.value, now, limit),
    )
    return [_order(r) for r in rows]


def mark_expired(tx: database.Tx, order_id: str, now: int) -> bool:
    """PENDING_PAYMENT past its deadline → EXPIRED; True when it happened."""
    changed = tx.execute(
        "UPDATE orders SET status = ?, updated_at = ? WHERE order_id = ? AND status = ? AND pay_by <= ?",
        (domain.Status.EXPIRED.value, now, order_id, domain.Status.PENDING_PAYMENT.value, now),
    )
    return changed == 1


def count_by_status(tx: database.Tx) -> dict[str, int]:
    """How many orders are in each status (the metrics' figures)."""
    rows = tx.fetchall("SELECT status, COUNT(*) FROM orders GROUP BY status")
    return {str(status): int(count) for status, count in rows}
