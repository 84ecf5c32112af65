"""The sales service's protobuf mapping: gRPC responses, the events it emits and the events it reads."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf import timestamp_pb2

from flashsale.common import decided, errors, events, timeutil, topics
from flashsale.sales import domain, stock_store
from flashsale_api.v1 import events_pb2, sales_pb2

SOURCE = "sales"

_OUTCOMES = {
    domain.Outcome.ACCEPTED: sales_pb2.PURCHASE_OUTCOME_ACCEPTED,
    domain.Outcome.SOLD_OUT: sales_pb2.PURCHASE_OUTCOME_SOLD_OUT,
    domain.Outcome.LIMIT_EXCEEDED: sales_pb2.PURCHASE_OUTCOME_LIMIT_EXCEEDED,
    domain.Outcome.NOT_STARTED: sales_pb2.PURCHASE_OUTCOME_NOT_STARTED,
    domain.Outcome.ENDED: sales_pb2.PURCHASE_OUTCOME_ENDED,
    domain.Outcome.PENDING: sales_pb2.PURCHASE_OUTCOME_PENDING,
}


def sale(value: domain.Sale) -> sales_pb2.Sale:
    """A sale as its gRPC message."""
    return sales_pb2.Sale(
        sale_id=value.sale_id,
        product_id=value.product_id,
        price_cents=value.price_cents,
        stock=value.stock,
        per_user_limit=value.per_user_limit,
        starts_at=timeutil.to_timestamp(value.starts_at),
        ends_at=timeutil.to_timestamp(value.ends_at),
        remaining=value.remaining,
    )


def decision(value: domain.Decision) -> sales_pb2.PurchaseDecision:
    """A decision as its gRPC message."""
    return sales_pb2.PurchaseDecision(
        request_id=value.request_id,
        sale_id=value.sale_id,
        user_id=value.user_id,
        quantity=value.quantity,
        outcome=_OUTCOMES[value.outcome],
        reservation_id=value.reservation_id,
        decided_at=timeutil.to_timestamp(value.decided_at),
    )


def stats(value: domain.SaleStats) -> sales_pb2.SaleStats:
    """Sale counters as their gRPC message."""
    return sales_pb2.SaleStats(
        sale_id=value.sale_id,
        stock=value.stock,
        reserved=value.reserved,
        released=value.released,
        remaining=value.remaining,
        accepted_requests=value.accepted_requests,
        rejected_requests=value.rejected_requests,
        requests_pending=value.requests_pending,
        reserve_remaining=value.reserve_remaining,
        partitions=[
            sales_pb2.PartitionStats(
                partition=p.partition,
                stock=p.stock,
                remaining=p.remaining,
                decided=p.decided,
                committed_offset=p.committed_offset,
                end_offset=p.end_offset,
            )
            for p in value.partitions
        ],
    )


def _sale_terms(value: domain.Sale) -> events_pb2.SaleCreated:
    return events_pb2.SaleCreated(
        sale_id=value.sale_id,
        product_id=value.product_id,
        price_cents=value.price_cents,
        stock=value.stock,
        per_user_limit=value.per_user_limit,
        starts_at=timeutil.to_timestamp(value.starts_at),
        ends_at=timeutil.to_timestamp(value.ends_at),
    )


def sale_created(value: domain.Sale) -> events_pb2.EventEnvelope:
    """The sale.created event of a new sale."""
    return events.envelope(topics.SALE_CREATED, value.sale_id, _sale_terms(value), SOURCE)


def sale_updated(value: domain.Sale) -> events_pb2.EventEnvelope:
    """The sale.updated event of a sale whose stock changed (the sale's terms, as sale.created carries them)."""
    return events.envelope(topics.SALE_UPDATED, value.sale_id, _sale_terms(value), SOURCE)


def purchases_decided(
    sale: domain.Sale,
    made: Sequence[domain.Decision],
    remaining: int,
    event_id: str = "",
    occurred_at: timestamp_pb2.Timestamp | None = None,
) -> events_pb2.EventEnvelope:
    """The purchases.decided event of decisions of one sale made together, in order, accepted or rejected, with
    the stock remaining after them (a fresh event id and the current time unless given)."""
    payload = events_pb2.PurchasesDecided(
        sale_id=sale.sale_id,
        product_id=sale.product_id,
        price_cents=sale.price_cents,
        stock=sale.stock,
        remaining=remaining,
        request_ids=[d.request_id for d in made],
        user_ids=[d.user_id for d in made],
        quantities=[d.quantity for d in made],
        reasons=[d.outcome.reason for d in made],
        reservation_ids=[d.reservation_id for d in made],
    )
    return events.envelope(topics.PURCHASES_DECIDED, sale.sale_id, payload, SOURCE, event_id, occurred_at)


def batch_event_id(topic: str, partition: int, start: int, end: int, part: int) -> str:
    """The event id of part `part` of the decisions of request-topic offsets [start, end) of a partition (stable,
    so publishing the same batch again is deduplicated by event id; consumers also deduplicate each decision)."""
    return f"decisions-{topic}-{partition}-{start}-{end}-{part}"


def stock_released(value: domain.Release) -> events_pb2.EventEnvelope:
    """The stock.released event of a reservation whose order expired or was cancelled."""
    payload = events_pb2.StockReleased(
        sale_id=value.sale.sale_id,
        reservation_id=value.reservation_id,
        quantity=value.quantity,
        reason=value.reason,
        remaining=value.remaining,
        product_id=value.sale.product_id,
        stock=value.sale.stock,
    )
    return events.envelope(topics.STOCK_RELEASED, value.sale.sale_id, payload, SOURCE)


def partitions(sale_id: str, found: stock_store.Split) -> sales_pb2.SalePartitions:
    """A sale's split as its gRPC message."""
    return sales_pb2.SalePartitions(
        sale_id=sale_id,
        topic=topics.request_topic(sale_id),
        partitions=[
            sales_pb2.PartitionStock(partition=p.partition, stock=p.stock, remaining=p.remaining)
            for p in found.partitions
        ],
        reserve=found.reserve,
        reserve_remaining=found.pool_remaining,
    )


def decisions_of(body: events_pb2.PurchasesDecided, decided_at: int) -> list[domain.Decision]:
    """The decisions a purchases.decided event carries (PermanentEventError for an unknown reason)."""
    try:
        return [
            domain.Decision(
                request_id=entry.request_id,
                sale_id=body.sale_id,
                user_id=entry.user_id,
                quantity=entry.quantity,
                outcome=domain.Outcome(entry.reason) if entry.reason else domain.Outcome.ACCEPTED,
                reservation_id=entry.reservation_id,
                decided_at=decided_at,
            )
            for entry in decided.entries(body)
        ]
    except ValueError as exc:
        raise errors.PermanentEventError(f"{topics.PURCHASES_DECIDED}: {exc}") from None


def order_change(env: events_pb2.EventEnvelope) -> tuple[str | None, str] | None:
    """What an order event does to its reservation: (release reason, reservation id) when it expired or was
    cancelled, (None, reservation id) when it was paid, None for any other event. PermanentEventError when it
    names no reservation."""
    reason = domain.release_reason(env.type)
    if reason is None and env.type != topics.ORDER_PAID:
        return None
    order = events_pb2.OrderChanged()
    events.unpack(env, order)
    if not order.reservation_id:
        raise errors.PermanentEventError(f"{env.type}: reservation_id is empty")
    return reason, order.reservation_id
