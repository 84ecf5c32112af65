"""The request topic's records: grouping by partition, order, size cap, and malformed records."""

from __future__ import annotations

import pytest

from flashsale.sales import domain, partitioning, records
from flashsale_api.v1 import sales_pb2


def _req(i: int, user: str) -> domain.PurchaseRequest:
    return domain.PurchaseRequest("sale", user, 1 + i % 3, f"r{i}")


def test_one_record_per_partition_keeps_each_users_requests_in_order() -> None:
    taken = [_req(i, f"user-{i % 7}") for i in range(60)]
    grouped = records.group(4, taken)
    assert len({p for p, _ in grouped}) == len(grouped)  # one record per partition
    decoded = {p: records.decode(value, offset=10 + p, arrived_at=5) for p, value in grouped}
    for partition, reqs in decoded.items():
        assert all(partitioning.partition_of(r.user_id, 4) == partition for r in reqs)
        assert all((r.offset, r.arrived_at) == (10 + partition, 5) for r in reqs)
    back = sorted((r for reqs in decoded.values() for r in reqs), key=lambda r: int(r.request_id[1:]))
    assert [(r.request_id, r.user_id, r.quantity) for r in back] == [
        (t.request_id, t.user_id, t.quantity) for t in taken
    ]
    for reqs in decoded.values():  # arrival order inside a record
        assert [int(r.request_id[1:]) for r in reqs] == sorted(int(r.request_id[1:]) for r in reqs)


def test_a_large_batch_is_cut_into_records_of_at_most_the_cap() -> None:
    taken = [_req(i, "same-user") for i in range(records.MAX_PER_RECORD + 5)]
    grouped = records.group(8, taken)
    sizes = [len(records.decode(value, 0, 0)) for _, value in grouped]
    assert sizes == [records.MAX_PER_RECORD, 5]


@pytest.mark.parametrize(
    "value",
    [
        b"\xff\xff\xff",
        sales_pb2.PurchaseRecord(request_ids=["a", "b"], user_ids=["u"], quantities=[1, 1]).SerializeToString(),
        sales_pb2.PurchaseRecord(request_ids=["a"], user_ids=["u"], quantities=[0]).SerializeToString(),
        sales_pb2.PurchaseRecord(request_ids=[""], user_ids=["u"], quantities=[1]).SerializeToString(),
    ],
)
def test_a_malformed_record_is_refused(value: bytes) -> None:
    with pytest.raises(records.MalformedRecord):
        records.decode(value, 0, 0)
