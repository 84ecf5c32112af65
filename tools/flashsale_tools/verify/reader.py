"""Reads a snapshot of one sale: the sales database (one consistent read), then the order database, then
how many requests still wait on the sale's request topic.

Reads the tables of docs/pipeline.md with SQL (no import of the sales service). The sales database is read
before the order database, so a reservation released in the snapshot had its order ended before.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import types
import uuid

import confluent_kafka

from flashsale.common import database, errors, kafka_security
from flashsale.common.settings import Settings
from flashsale_tools.verify import model

log = logging.getLogger(__name__)


def request_topic(sale_id: str) -> str:
    """The request topic of a sale."""
    return f"flashsale.sale.{sale_id}.requests"


@dataclasses.dataclass(frozen=True)
class _SalesRows:
    sale: model.Sale
    partitions: tuple[model.Partition, ...]
    pool: model.Pool | None
    offsets: tuple[model.PartitionOffset, ...]
    decisions: tuple[model.Decision, ...]
    reservations: tuple[model.Reservation, ...]


def _sales_rows(tx: database.Tx, sale_id: str) -> _SalesRows:
    row = tx.fetchone(
        "SELECT s.sale_id, s.product_id, s.stock, s.per_user_limit, s.starts_at, s.ends_at,"
        " (SELECT COALESCE(SUM(p.remaining), 0) FROM sale_partitions p WHERE p.sale_id = s.sale_id)"
        " + (SELECT COALESCE(SUM(q.remaining), 0) FROM sale_pools q WHERE q.sale_id = s.sale_id),"
        " COALESCE(s.partitions, 0), COALESCE(s.reserve, 0) FROM sales s WHERE s.sale_id = ?",
        (sale_id,),
    )
    if row is None:
        raise errors.NotFound(f"no sale {sale_id!r}", "sale_id")
    sale = model.Sale(str(row[0]), str(row[1]), *(int(v) for v in row[2:9]))
    partitions = tuple(
        model.Partition(int(r[0]), int(r[1]), int(r[2]), int(r[3]))
        for r in tx.fetchall(
            'SELECT "partition", stock, remaining, decided FROM sale_partitions WHERE sale_id = ? ORDER BY "partition"',
            (sale_id,),
        )
    )
    pool_row = tx.fetchone("SELECT stock, remaining FROM sale_pools WHERE sale_id = ?", (sale_id,))
    pool = model.Pool(int(pool_row[0]), int(pool_row[1])) if pool_row else None
    offsets = tuple(
        model.PartitionOffset(int(r[0]), int(r[1]), int(r[2]))
        for r in tx.fetchall(
            'SELECT "partition", next_offset, published_offset FROM partition_offsets WHERE topic = ?'
            ' ORDER BY "partition"',
            (request_topic(sale_id),),
        )
    )
    decisions = tuple(
        model.Decision(
            request_id=str(r[0]),
            user_id=str(r[1]),
            quantity=int(r[2]),
            outcome=str(r[3]),
            reservation_id=str(r[4]),
            decided_at=int(r[5]),
            partition=int(r[6]),
            log_offset=int(r[7]),
            arrived_at=int(r[8]),
        )
        for r in tx.fetchall(
            "SELECT request_id, user_id, quantity, outcome, COALESCE(reservation_id, ''), decided_at,"
            ' COALESCE("partition", -1), COALESCE(log_offset, -1), COALESCE(arrived_at, decided_at)'
            " FROM decisions WHERE sale_id = ?",
            (sale_id,),
        )
    )
    reservations = tuple(
        model.Reservation(
            reservation_id=str(r[0]),
            request_id=str(r[1]),
            user_id=str(r[2]),
            quantity=int(r[3]),
            status=str(r[4]),
            release_reason=str(r[5]),
            created_at=int(r[6]),
            updated_at=int(r[7]),
            partition=int(r[8]),
        )
        for r in tx.fetchall(
            "SELECT reservation_id, request_id, user_id, quantity, status, COALESCE(release_reason, ''),"
            ' created_at, updated_at, COALESCE("partition", -1) FROM reservations WHERE sale_id = ?',
            (sale_id,),
        )
    )
    return _SalesRows(sale, partitions, pool, offsets, decisions, reservations)


def _orders(tx: database.Tx, sale_id: str) -> tuple[model.Order, ...]:
    return tuple(
        model.Order(str(r[0]), str(r[1]), str(r[2]), int(r[3]))
        for r in tx.fetchall(
            "SELECT order_id, reservation_id, status, pay_by FROM orders WHERE sale_id = ?", (sale_id,)
        )
    )


class Reader:
    """Open connections to the sales and order databases (and Kafka) that read snapshots of sales."""

    def __init__(self, settings: Settings, *, kafka: bool = True, kafka_timeout_s: float = 10.0) -> None:
        if settings.db_backend == "sqlite":
            for service in ("sales", "order"):
                path = settings.sqlite_dir / f"{service}.db"
                if not path.is_file():
                    raise errors.FailedPrecondition(f"no {service} database at {path}", "sqlite_dir")
        self._timeout = kafka_timeout_s
        self._sales: database.Database | None = database.open_database(settings, "sales")
        self._orders: database.Database | None = None
        self._consumer: confluent_kafka.Consumer | None = None
        try:
            self._orders = database.open_database(settings, "order")
            if kafka:
                self._consumer = confluent_kafka.Consumer(
                    {
                        **kafka_security.client_settings(settings),
                        "bootstrap.servers": settings.kafka_bootstrap,
                        "group.id": f"flashsale-verify-{uuid.uuid4().hex}",
                        "enable.auto.commit": False,
                        "allow.auto.create.topics": False,
                    }
                )
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Reader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: types.TracebackType | None
    ) -> None:
        self.close()

    def snapshot(self, sale_id: str) -> model.Snapshot:
        """The sale's rows, its orders and (with Kafka) the requests still pending on its topic.

        When Kafka cannot be read, `pending_requests` is None (unknown) and a warning is logged.
        """
        if self._sales is None or self._orders is None:
            raise errors.FailedPrecondition("the reader is closed", "reader")
        dialect = self._sales.dialect

        def read(tx: database.Tx) -> _SalesRows:
            if dialect == "postgres":  # one snapshot for every statement of this transaction
                tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            return _sales_rows(tx, sale_id)

        rows = self._sales.run_sync(read)
        orders = self._orders.run_sync(lambda tx: _orders(tx, sale_id))
        pending = None
        if self._consumer is not None and rows.sale.partitions > 0:
            try:
                pending = self.pending_requests(sale_id, rows.sale.partitions, rows.offsets)
            except errors.TemporaryError as exc:
                log.warning("pending requests unknown", extra={"sale_id": sale_id, "error": str(exc)})
        return model.Snapshot(
            sale=rows.sale,
            partitions=rows.partitions,
            pool=rows.pool,
            offsets=rows.offsets,
            decisions=rows.decisions,
            reservations=rows.reservations,
            orders=orders,
            pending_requests=pending,
        )

    def pending_requests(self, sale_id: str, partitions: int, offsets: tuple[model.PartitionOffset, ...]) -> int:
        """Requests on the sale's topic not decided yet: Σ end offset - next offset to decide."""
        if self._consumer is None:
            raise errors.FailedPrecondition("the reader was opened without Kafka", "kafka")
        topic = request_topic(sale_id)
        decided = {o.partition: o.next_offset for o in offsets}
        pending = 0
        for p in range(partitions):
            try:
                low, high = self._consumer.get_watermark_offsets(
                    confluent_kafka.TopicPartition(topic, p), timeout=self._timeout
                )
            except confluent_kafka.KafkaException as exc:
                raise errors.TemporaryError(f"cannot read the end offsets of {topic}: {exc}") from exc
            pending += max(0, int(high) - max(int(low), decided.get(p, 0)))
        return pending

    def close(self) -> None:
        """Close the databases and the Kafka client."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        for db in (self._sales, self._orders):
            if db is not None:
                db.close()
        self._sales = self._orders = None


def read_snapshot(settings: Settings, sale_id: str, *, kafka: bool = True) -> model.Snapshot:
    """One snapshot of a sale, opening and closing the connections."""
    with contextlib.closing(Reader(settings, kafka=kafka)) as reader:
        return reader.snapshot(sale_id)
