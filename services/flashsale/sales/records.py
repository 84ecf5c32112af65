"""Records of a sale's request topic: the purchases taken together that go to one partition, as columns.

One Kafka record carries many purchases, so appending, fetching and parsing cost per record, not per purchase.
Within a record the purchases keep their arrival order; the record's offset orders it in the partition's log.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import google.protobuf.message

from flashsale.sales import domain, ledger, partitioning
from flashsale_api.v1 import sales_pb2

# Purchases per record at most: a full record (request ids and user ids of up to 64 characters) stays far below
# Kafka's default 1 MB message size.
MAX_PER_RECORD = 4000


class MalformedRecord(ValueError):
    """A record of the request topic that cannot be read as purchases."""


def group(
    partitions: int, requests: Sequence[domain.PurchaseRequest], traces: Sequence[str] = ()
) -> list[tuple[int, bytes]]:
    """(partition, record) pairs for requests of one sale: one record per partition (more when one would be
    larger than MAX_PER_RECORD), each keeping the requests' order; `traces`, when given, holds each request's
    traceparent."""
    by_partition: dict[int, list[domain.PurchaseRequest]] = {}
    traced: dict[int, list[str]] = {}
    for req in requests:
        by_partition.setdefault(partitioning.partition_of(req.user_id, partitions), []).append(req)
    for req, trace in zip(requests, traces, strict=True) if traces else ():
        traced.setdefault(partitioning.partition_of(req.user_id, partitions), []).append(trace)
    out = []
    for partition, taken in by_partition.items():
        theirs = traced.get(partition, [])
        for start in range(0, len(taken), MAX_PER_RECORD):
            end = start + MAX_PER_RECORD
            out.append((partition, encode(taken[start:end], theirs[start:end])))
    return out


def encode(requests: Sequence[domain.PurchaseRequest], traces: Sequence[str] = ()) -> bytes:
    """One record holding these requests, in order (and their traceparents, when given)."""
    return sales_pb2.PurchaseRecord(
        request_ids=[r.request_id for r in requests],
        user_ids=[r.user_id for r in requests],
        quantities=[r.quantity for r in requests],
        traceparents=traces,
    ).SerializeToString()


def traceparents(value: bytes) -> list[str]:
    """The traceparents a record carries for its purchases (none when it was taken with traces off)."""
    record = sales_pb2.PurchaseRecord()
    try:
        record.ParseFromString(value)
    except google.protobuf.message.DecodeError:
        return []
    return [t for t in record.traceparents if t]


def decode(value: bytes, offset: int, arrived_at: int) -> list[ledger.Request]:
    """The requests of the record at `offset` appended at `arrived_at`; MalformedRecord when it is not one."""
    record = sales_pb2.PurchaseRecord()
    try:
        record.ParseFromString(value)
    except google.protobuf.message.DecodeError as exc:
        raise MalformedRecord(f"not a purchase record: {exc}") from None
    ids, users, quantities = list(record.request_ids), list(record.user_ids), list(record.quantities)
    if not len(ids) == len(users) == len(quantities):
        raise MalformedRecord(f"columns of different lengths: {len(ids)}, {len(users)}, {len(quantities)}")
    if ids and (min(quantities) < 1 or not all(ids) or not all(users)):
        raise MalformedRecord("a purchase without a request id, a user or a positive quantity")
    # tuple.__new__ over the zipped columns: the named tuples built in C (decoding is per request)
    columns = zip(ids, users, quantities, itertools.repeat(arrived_at), itertools.repeat(offset))
    return list(map(tuple.__new__, itertools.repeat(ledger.Request), columns))
