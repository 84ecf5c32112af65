"""Cluster ids for the local Kafka broker's storage format."""

from __future__ import annotations

import base64

from flashsale_tools.platform import kafka_broker


def test_a_cluster_id_never_starts_with_a_dash_the_storage_tool_would_take_for_an_option() -> None:
    ids = [kafka_broker.new_cluster_id() for _ in range(5000)]  # about 1 in 64 raw ids starts with "-"
    assert not [i for i in ids if i.startswith("-")]
    assert {len(i) for i in ids} == {22}
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
    assert len(set(ids)) == len(ids)
