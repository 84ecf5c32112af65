"""SQL of the sales table: a sale's terms, its stock and its split (remaining stock lives in stock_store)."""

from __future__ import annotations

from typing import NamedTuple

from flashsale.common import database
from flashsale.sales import domain

_COLUMNS = "sale_id, product_id, price_cents, stock, per_user_limit, starts_at, ends_at, created_at, partitions"
# what is left: every partition plus the pool (stock_store's tables)
_REMAINING = (
    "(SELECT COALESCE(SUM(p.remaining), 0) FROM sale_partitions p WHERE p.sale_id = s.sale_id)"
    " + (SELECT COALESCE(SUM(q.remaining), 0) FROM sale_pools q WHERE q.sale_id = s.sale_id)"
)
_SELECT = f"SELECT {', '.join('s.' + c.strip() for c in _COLUMNS.split(','))}, {_REMAINING} FROM sales s"


def _sale(row: database.Row) -> domain.Sale:
    return domain.Sale(
        sale_id=str(row[0]),
        product_id=str(row[1]),
        price_cents=int(row[2]),
        stock=int(row[3]),
        per_user_limit=int(row[4]),
        starts_at=int(row[5]),
        ends_at=int(row[6]),
        created_at=int(row[7]),
        partitions=int(row[8]),
        remaining=int(row[9]),
    )


def insert(tx: database.Tx, sale: domain.Sale) -> None:
    """Store a new sale (its split goes in with stock_store.store_split in the same transaction)."""
    tx.execute(
        f"INSERT INTO sales ({_COLUMNS}, reserve) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
        (
            sale.sale_id,
            sale.product_id,
            sale.price_cents,
            sale.stock,
            sale.per_user_limit,
            sale.starts_at,
            sale.ends_at,
            sale.created_at,
            sale.partitions,
        ),
    )


def get(tx: database.Tx, sale_id: str) -> domain.Sale | None:
    """A sale by id, with what is left of its stock, or None."""
    row = tx.fetchone(f"{_SELECT} WHERE s.sale_id = ?", (sale_id,))
    return _sale(row) if row else None


def list_all(tx: database.Tx, product_id: str = "") -> list[domain.Sale]:
    """Every sale, oldest first, optionally of one product only."""
    if product_id:
        rows = tx.fetchall(f"{_SELECT} WHERE s.product_id = ? ORDER BY s.created_at, s.sale_id", (product_id,))
    else:
        rows = tx.fetchall(f"{_SELECT} ORDER BY s.created_at, s.sale_id")
    return [_sale(row) for row in rows]


def stock_of(tx: database.Tx, sale_id: str) -> int:
    """A sale's stock now (it may change until its first decision); 0 for an unknown sale."""
    row = tx.fetchone("SELECT stock FROM sales WHERE sale_id = ?", (sale_id,))
    return int(row[0]) if row else 0


def set_stock(tx: database.Tx, sale_id: str, stock: int) -> None:
    """Change a sale's stock (the caller re-split it in stock_store, which refuses once some was taken)."""
    tx.execute("UPDATE sales SET stock = ? WHERE sale_id = ?", (stock, sale_id))


def set_split(tx: database.Tx, sale_id: str, partitions: int, reserve: int) -> None:
    """Record how the sale's stock is split: partitions and reserve pool."""
    tx.execute("UPDATE sales SET partitions = ?, reserve = ? WHERE sale_id = ?", (partitions, reserve, sale_id))


class Figures(NamedTuple):
    """A sale's units: offered, left, and held by buyers (reserved or confirmed)."""

    sale_id: str
    stock: int
    remaining: int
    held: int


def figures(tx: database.Tx) -> list[Figures]:
    """Every sale's units, read in one statement (for the metrics)."""
    rows = tx.fetchall(
        f"SELECT s.sale_id, s.stock, {_REMAINING}, (SELECT COALESCE(SUM(r.quantity), 0) FROM reservations r"
        " WHERE r.sale_id = s.sale_id AND r.status <> 'released') FROM sales s ORDER BY s.sale_id"
    )
    return [Figures(str(a), int(b), int(c), int(d)) for a, b, c, d in rows]
