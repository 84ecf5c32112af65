"""Product tables and their SQL."""

from __future__ import annotations

from flashsale.common import database
from flashsale.product import domain

MIGRATIONS = [
    """
CREATE TABLE products (
  product_id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  description TEXT NOT NULL,
  base_price_cents BIGINT NOT NULL,
  currency TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE INDEX products_by_created ON products (created_at, product_id);
CREATE TABLE availability (
  sale_id TEXT PRIMARY KEY,
  product_id TEXT NOT NULL,
  stock BIGINT NOT NULL,
  remaining BIGINT NOT NULL,
  sale_price_cents BIGINT NOT NULL,
  starts_at BIGINT NOT NULL,
  ends_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE INDEX availability_by_product ON availability (product_id)
"""
]

_PRODUCT = "product_id, name, description, base_price_cents, currency, created_at, updated_at"
_AVAILABILITY = "sale_id, product_id, stock, remaining, sale_price_cents, starts_at, ends_at, updated_at"


def _product(row: database.Row) -> domain.Product:
    return domain.Product(str(row[0]), str(row[1]), str(row[2]), int(row[3]), str(row[4]), int(row[5]), int(row[6]))


def _availability(row: database.Row) -> domain.Availability:
    return domain.Availability(
        str(row[0]), str(row[1]), int(row[2]), int(row[3]), int(row[4]), int(row[5]), int(row[6]), int(row[7])
    )


def insert_product(tx: database.Tx, product: domain.Product) -> None:
    """Store a new product."""
    tx.execute(
        f"INSERT INTO products ({_PRODUCT}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            product.product_id,
            product.name,
            product.description,
            product.base_price_cents,
            product.currency,
            product.created_at,
            product.updated_at,
        ),
    )


def patch_product(tx: database.Tx, product_id: str, patch: domain.ProductPatch, now: int) -> bool:
    """Change the set fields of a product in one statement; False when it does not exist."""
    changed = tx.execute(
        "UPDATE products SET name = COALESCE(?, name), description = COALESCE(?, description), "
        "base_price_cents = COALESCE(?, base_price_cents), updated_at = ? WHERE product_id = ?",
        (patch.name, patch.description, patch.base_price_cents, now, product_id),
    )
    return changed > 0


def get_product(tx: database.Tx, product_id: str) -> domain.Product | None:
    """One product, or None."""
    row = tx.fetchone(f"SELECT {_PRODUCT} FROM products WHERE product_id = ?", (product_id,))
    return _product(row) if row else None


def list_products(tx: database.Tx, after: domain.Cursor | None, limit: int) -> list[domain.Product]:
    """Up to limit products ordered by (created_at, product_id), after the cursor."""
    if after is None:
        rows = tx.fetchall(f"SELECT {_PRODUCT} FROM products ORDER BY created_at, product_id LIMIT ?", (limit,))
    else:
        rows = tx.fetchall(
            f"SELECT {_PRODUCT} FROM products WHERE created_at > ? OR (created_at = ? AND product_id > ?) "
            "ORDER BY created_at, product_id LIMIT ?",
            (after.created_at, after.created_at, after.last_id, limit),
        )
    return [_product(r) for r in rows]


def availability_of(tx: database.Tx, product_ids: list[str]) -> dict[str, list[domain.Availability]]:
    """The availability rows of each product, ordered by sale start then sale id."""
    found: dict[str, list[domain.Availability]] = {pid: [] for pid in product_ids}
    if not product_ids:
        return found
    marks = ", ".join("?" for _ in product_ids)
    rows = tx.fetchall(
        f"SELECT {_AVAILABILITY} FROM availability WHERE product_id IN ({marks}) ORDER BY starts_at, sale_id",
        tuple(product_ids),
    )
    for row in rows:
        item = _availability(row)
        found[item.product_id].append(item)
    return found


def get_availability(tx: database.Tx, sale_id: str) -> domain.Availability | None:
    """The availability row of one sale, or None."""
    row = tx.fetchone(f"SELECT {_AVAILABILITY} FROM availability WHERE sale_id = ?", (sale_id,))
    return _availability(row) if row else None


def upsert_sale(tx: database.Tx, sale: domain.Availability) -> None:
    """Record a created sale; a row made earlier from a decision keeps its remaining stock."""
    changed = tx.execute(
        "UPDATE availability SET product_id = ?, stock = ?, sale_price_cents = ?, starts_at = ?, ends_at = ?, "
        "updated_at = ? WHERE sale_id = ?",
        (
            sale.product_id,
            sale.stock,
            sale.sale_price_cents,
            sale.starts_at,
            sale.ends_at,
            sale.updated_at,
            sale.sale_id,
        ),
    )
    if changed == 0:
        _insert_availability(tx, sale)


def set_remaining(tx: database.Tx, fallback: domain.Availability) -> None:
    """Set a sale's remaining (and stock when known); an unseen sale gets a row if the fallback names a product."""
    if fallback.stock > 0:
        changed = tx.execute(
            "UPDATE availability SET remaining = ?, stock = ?, updated_at = ? WHERE sale_id = ?",
            (fallback.remaining, fallback.stock, fallback.updated_at, fallback.sale_id),
        )
    else:
        changed = tx.execute(
            "UPDATE availability SET remaining = ?, updated_at = ? WHERE sale_id = ?",
            (fallback.remaining, fallback.updated_at, fallback.sale_id),
        )
    if changed == 0 and fallback.product_id:
        _insert_availability(tx, fallback)


def _insert_availability(tx: database.Tx, a: domain.Availability) -> None:
    tx.execute(
        f"INSERT INTO availability ({_AVAILABILITY}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (a.sale_id, a.product_id, a.stock, a.remaining, a.sale_price_cents, a.starts_at, a.ends_at, a.updated_at),
    )
