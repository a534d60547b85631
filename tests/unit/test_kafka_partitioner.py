"""Keys land on the partition any Kafka client would choose."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.partitioner import DefaultPartitioner

from lakecast.kafka.partitioner import CachedKeyPartitioner

pytestmark = pytest.mark.unit


class Cluster:
    def __init__(self, partitions: int) -> None:
        self.partitions = set(range(partitions))

    def topics(self) -> set[str]:
        return {"predictions"}

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.partitions if topic == "predictions" else None

    def available_partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.partitions_for_topic(topic)


def _partition(partitioner: Any, key: bytes | None, cluster: Cluster) -> int:
    return int(partitioner.partition("predictions", key, key, b"v", b"v", cluster))


@pytest.mark.parametrize("partitions", [1, 6, 7, 48])
def test_every_key_goes_where_the_default_partitioner_sends_it(partitions: int) -> None:
    cached, default = CachedKeyPartitioner(max_keys=100), DefaultPartitioner()
    cluster = Cluster(partitions)
    keys = [f"u-{i}".encode() for i in range(500)] * 2  # more keys than the cache holds, twice
    assert [_partition(cached, k, cluster) for k in keys] == [
        _partition(default, k, cluster) for k in keys
    ]


def test_known_murmur2_partitions_and_keys_of_any_buffer_type() -> None:
    # Kafka's own test vectors (Java ``Utils.murmur2``): toPositive(hash) % partitions.
    cached, cluster = CachedKeyPartitioner(), Cluster(1_000_000)
    assert _partition(cached, b"21", cluster) == (-973932308 & 0x7FFFFFFF) % 1_000_000
    assert cached.partition("predictions", None, bytearray(b"21"), None, None, cluster) == (
        _partition(cached, b"21", cluster)
    )


def test_keyless_records_and_unknown_topics() -> None:
    cached, cluster = CachedKeyPartitioner(), Cluster(6)
    assert {_partition(cached, None, cluster) for _ in range(50)} <= set(range(6))
    with pytest.raises(ValueError, match="elsewhere"):
        cached.partition("elsewhere", b"k", b"k", None, None, cluster)
