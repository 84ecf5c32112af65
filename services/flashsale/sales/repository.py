"""Tables of the sales service and the atomic SQL of the purchase path.

Every write that guards an invariant is a single conditional statement, so it is correct under
concurrency on SQLite (serialised writers) and on PostgreSQL at READ COMMITTED (the row is re-checked
after its lock is taken). Lock order on the purchase path: decision → user counter → sale row;
the release path takes reservation → user counter → sale row, so the two never deadlock.
"""

from __future__ import annotations

from flashsale.common import database
from flashsale.sales import domain

MIGRATIONS = [
    """
CREATE TABLE sales (
  sale_id TEXT PRIMARY KEY,
  product_id TEXT NOT NULL,
  price_cents BIGINT NOT NULL,
  stock BIGINT NOT NULL,
  per_user_limit INTEGER NOT NULL,
  starts_at BIGINT NOT NULL,
  ends_at BIGINT NOT NULL,
  remaining BIGINT NOT NULL CHECK (remaining >= 0 AND remaining <= stock),
  created_at BIGINT NOT NULL
);
CREATE INDEX sales_by_product ON sales (product_id, created_at);
CREATE TABLE decisions (
  request_id TEXT PRIMARY KEY,
  sale_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  quantity INTEGER NOT NULL,
  outcome TEXT NOT NULL,
  reservation_id TEXT NOT NULL DEFAULT '',
  decided_at BIGINT NOT NULL
);
CREATE INDEX decisions_by_sale ON decisions (sale_id, outcome);
CREATE TABLE user_counters (
  sale_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  qty INTEGER NOT NULL CHECK (qty >= 0),
  PRIMARY KEY (sale_id, user_id)
);
CREATE TABLE reservations (
  reservation_id TEXT PRIMARY KEY,
  request_id TEXT NOT NULL UNIQUE,
  sale_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  quantity INTEGER NOT NULL,
  status TEXT NOT NULL,
  release_reason TEXT NOT NULL DEFAULT '',
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE INDEX reservations_by_sale ON reservations (sale_id, status)
""",
    """
ALTER TABLE sales ADD COLUMN partitions INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sales ADD COLUMN reserve BIGINT NOT NULL DEFAULT 0;
ALTER TABLE decisions ADD COLUMN partition INTEGER NOT NULL DEFAULT -1;
ALTER TABLE decisions ADD COLUMN log_offset BIGINT NOT NULL DEFAULT -1;
ALTER TABLE decisions ADD COLUMN arrived_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE reservations ADD COLUMN partition INTEGER NOT NULL DEFAULT -1;
CREATE INDEX decisions_by_log ON decisions (sale_id, partition, log_offset);
CREATE TABLE sale_partitions (
  sale_id TEXT NOT NULL,
  partition INTEGER NOT NULL,
  stock BIGINT NOT NULL,
  remaining BIGINT NOT NULL CHECK (remaining >= 0),
  decided BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (sale_id, partition)
);
CREATE TABLE sale_pools (
  sale_id TEXT PRIMARY KEY,
  stock BIGINT NOT NULL,
  remaining BIGINT NOT NULL CHECK (remaining >= 0)
);
CREATE TABLE partition_offsets (
  topic TEXT NOT NULL,
  partition INTEGER NOT NULL,
  next_offset BIGINT NOT NULL,
  published_offset BIGINT NOT NULL,
  PRIMARY KEY (topic, partition)
)
""",
    # every query by sale uses decisions_by_log's (sale_id, …) prefix; one index less to update per decision
    "DROP INDEX decisions_by_sale",
]

PENDING = domain.Outcome.PENDING.value  # a claimed request id whose decision is being made (never committed)

_SALE_COLUMNS = (
    "sale_id, product_id, price_cents, stock, per_user_limit, starts_at, ends_at, remaining, created_at, partitions"
)
_DECISION_COLUMNS = "request_id, sale_id, user_id, quantity, outcome, reservation_id, decided_at"


def _sale(row: database.Row) -> domain.Sale:
    return domain.Sale(
        sale_id=str(row[0]),
        product_id=str(row[1]),
        price_cents=int(row[2]),
        stock=int(row[3]),
        per_user_limit=int(row[4]),
        starts_at=int(row[5]),
        ends_at=int(row[6]),
        remaining=int(row[7]),
        created_at=int(row[8]),
        partitions=int(row[9]),
    )


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


def set_untouched_stock(tx: database.Tx, sale_id: str, stock: int) -> bool:
    """Set a sale's stock and remaining while none of it was taken; False when some was."""
    changed = tx.execute(
        "UPDATE sales SET stock = ?, remaining = ? WHERE sale_id = ? AND remaining = stock", (stock, stock, sale_id)
    )
    return changed == 1


def insert_sale(tx: database.Tx, sale: domain.Sale) -> None:
    """Store a new sale."""
    tx.execute(
        f"INSERT INTO sales ({_SALE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            sale.sale_id,
            sale.product_id,
            sale.price_cents,
            sale.stock,
            sale.per_user_limit,
            sale.starts_at,
            sale.ends_at,
            sale.remaining,
            sale.created_at,
            sale.partitions,
        ),
    )


def get_sale(tx: database.Tx, sale_id: str) -> domain.Sale | None:
    """A sale by id, or None."""
    row = tx.fetchone(f"SELECT {_SALE_COLUMNS} FROM sales WHERE sale_id = ?", (sale_id,))
    return _sale(row) if row else None


def list_sales(tx: database.Tx, product_id: str = "") -> list[domain.Sale]:
    """Every sale, oldest first, optionally of one product only."""
    if product_id:
        rows = tx.fetchall(
            f"SELECT {_SALE_COLUMNS} FROM sales WHERE product_id = ? ORDER BY created_at, sale_id", (product_id,)
        )
    else:
        rows = tx.fetchall(f"SELECT {_SALE_COLUMNS} FROM sales ORDER BY created_at, sale_id")
    return [_sale(row) for row in rows]


def remaining(tx: database.Tx, sale_id: str) -> int:
    """The sale's remaining stock as committed now."""
    row = tx.fetchone("SELECT remaining FROM sales WHERE sale_id = ?", (sale_id,))
    return int(row[0]) if row else 0


def claim_request(tx: database.Tx, request: domain.PurchaseRequest, now: int) -> bool:
    """Claim a request id for this transaction; False when a decision for it exists already.

    On PostgreSQL a concurrent claim of the same id waits here until the first one commits.
    """
    claimed = tx.execute(
        f"INSERT INTO decisions ({_DECISION_COLUMNS}) VALUES (?, ?, ?, ?, ?, '', ?) "
        "ON CONFLICT (request_id) DO NOTHING",
        (request.request_id, request.sale_id, request.user_id, request.quantity, PENDING, now),
    )
    return claimed == 1


def get_decision_count(tx: database.Tx, sale_id: str) -> int:
    """How many requests of a sale have a decision (or a claim)."""
    row = tx.fetchone("SELECT COUNT(*) FROM decisions WHERE sale_id = ?", (sale_id,))
    return int(row[0]) if row else 0


def get_decision(tx: database.Tx, request_id: str) -> domain.Decision | None:
    """The committed decision of a request id, or None."""
    row = tx.fetchone(
        f"SELECT {_DECISION_COLUMNS} FROM decisions WHERE request_id = ? AND outcome <> ?", (request_id, PENDING)
    )
    return _decision(row) if row else None


def record_decision(tx: database.Tx, decision: domain.Decision) -> None:
    """Fill in the outcome of a claimed request id."""
    tx.execute(
        "UPDATE decisions SET outcome = ?, reservation_id = ?, decided_at = ? WHERE request_id = ?",
        (decision.outcome.value, decision.reservation_id, decision.decided_at, decision.request_id),
    )


def add_to_counter(tx: database.Tx, sale_id: str, user_id: str, quantity: int, limit: int) -> int | None:
    """Atomically add to a user's bought quantity unless it would pass the limit; the new total or None."""
    row = tx.fetchone(
        "INSERT INTO user_counters (sale_id, user_id, qty) VALUES (?, ?, ?) "
        "ON CONFLICT (sale_id, user_id) DO UPDATE SET qty = user_counters.qty + excluded.qty "
        "WHERE user_counters.qty + excluded.qty <= ? RETURNING qty",
        (sale_id, user_id, quantity, limit),
    )
    return int(row[0]) if row else None


def take_from_counter(tx: database.Tx, sale_id: str, user_id: str, quantity: int) -> None:
    """Give back quantity to a user's allowance (a rejected or released purchase)."""
    tx.execute(
        "UPDATE user_counters SET qty = qty - ? WHERE sale_id = ? AND user_id = ? AND qty >= ?",
        (quantity, sale_id, user_id, quantity),
    )


def take_stock(tx: database.Tx, sale_id: str, quantity: int) -> int | None:
    """Atomically take quantity from the sale's stock; the remaining stock, or None when too little is left."""
    row = tx.fetchone(
        "UPDATE sales SET remaining = remaining - ? WHERE sale_id = ? AND remaining >= ? RETURNING remaining",
        (quantity, sale_id, quantity),
    )
    return int(row[0]) if row else None


def give_stock(tx: database.Tx, sale_id: str, quantity: int) -> int:
    """Return quantity to the sale's stock; the remaining stock after."""
    row = tx.fetchone(
        "UPDATE sales SET remaining = remaining + ? WHERE sale_id = ? RETURNING remaining", (quantity, sale_id)
    )
    if row is None:
        raise LookupError(f"sale {sale_id} vanished")
    return int(row[0])


def insert_reservation(tx: database.Tx, decision: domain.Decision) -> None:
    """Record the reservation of an accepted decision."""
    tx.execute(
        "INSERT INTO reservations (reservation_id, request_id, sale_id, user_id, quantity, status, "
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            decision.reservation_id,
            decision.request_id,
            decision.sale_id,
            decision.user_id,
            decision.quantity,
            domain.ReservationStatus.RESERVED.value,
            decision.decided_at,
            decision.decided_at,
        ),
    )


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


def reservation_status(tx: database.Tx, reservation_id: str) -> domain.ReservationStatus | None:
    """The status of a reservation, or None when it is unknown."""
    row = tx.fetchone("SELECT status FROM reservations WHERE reservation_id = ?", (reservation_id,))
    return domain.ReservationStatus(row[0]) if row else None


def stats(tx: database.Tx, sale: domain.Sale) -> domain.SaleStats:
    """Counters of a sale, read in one transaction."""
    held = tx.fetchone(
        "SELECT COALESCE(SUM(CASE WHEN status <> ? THEN quantity ELSE 0 END), 0), "
        "COALESCE(SUM(CASE WHEN status = ? THEN quantity ELSE 0 END), 0) FROM reservations WHERE sale_id = ?",
        (domain.ReservationStatus.RELEASED.value, domain.ReservationStatus.RELEASED.value, sale.sale_id),
    )
    counts = tx.fetchone(
        "SELECT COALESCE(SUM(CASE WHEN outcome = ? THEN 1 ELSE 0 END), 0), "
        "COALESCE(SUM(CASE WHEN outcome NOT IN (?, ?) THEN 1 ELSE 0 END), 0) FROM decisions WHERE sale_id = ?",
        (domain.Outcome.ACCEPTED.value, domain.Outcome.ACCEPTED.value, PENDING, sale.sale_id),
    )
    reserved, released = (int(held[0]), int(held[1])) if held else (0, 0)
    accepted, rejected = (int(counts[0]), int(counts[1])) if counts else (0, 0)
    return domain.SaleStats(
        sale_id=sale.sale_id,
        stock=sale.stock,
        reserved=reserved,
        released=released,
        remaining=sale.remaining,
        accepted_requests=accepted,
        rejected_requests=rejected,
    )
