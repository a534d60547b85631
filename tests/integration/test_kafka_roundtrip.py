"""Round trips through the real local broker: idempotent produce, then transactions."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

MESSAGES = 10_000
KEYS = 10


@contextmanager
def _consumer(bootstrap: str, topic: str, **options: object) -> Iterator[KafkaConsumer]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, **options
    )
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    try:
        yield consumer
    finally:
        consumer.close()


def _read_to_end(consumer: KafkaConsumer, timeout_s: float = 60.0) -> list[tuple[str, str, int]]:
    """(key, value, partition) of every record up to the end offsets seen at the start.

    Under read_committed the end offset is the last stable offset, so this stops exactly after
    the last committed record, without waiting for a quiet period.
    """
    partitions = list(consumer.assignment())
    end = consumer.end_offsets(partitions)
    records: list[tuple[str, str, int]] = []
    deadline = time.monotonic() + timeout_s
    while any(consumer.position(tp) < end[tp] for tp in partitions):
        if time.monotonic() > deadline:
            raise AssertionError(f"read {len(records)} records; end offsets {end} not reached")
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend((r.key.decode(), r.value.decode(), r.partition) for r in batch)
    return records


def test_idempotent_producer_round_trip_keeps_every_message_once_and_in_key_order(
    bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("roundtrip", partitions=3)
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    futures = [
        producer.send(topic, key=f"user-{i % KEYS}".encode(), value=f"event-{i}".encode())
        for i in range(MESSAGES)
    ]
    producer.flush(timeout=60)
    metadata = [future.get(timeout=30) for future in futures]
    producer.close()
    assert {m.topic for m in metadata} == {topic}
    assert all(m.offset >= 0 for m in metadata)

    with _consumer(bootstrap, topic) as consumer:
        records = _read_to_end(consumer)

    values = [value for _, value, _ in records]
    assert len(values) == MESSAGES
    assert set(values) == {f"event-{i}" for i in range(MESSAGES)}
    per_key: dict[str, list[int]] = defaultdict(list)
    partition_of_key: dict[str, set[int]] = defaultdict(set)
    for key, value, partition in records:
        per_key[key].append(int(value.removeprefix("event-")))
        partition_of_key[key].add(partition)
    assert sorted(per_key) == sorted(f"user-{k}" for k in range(KEYS))
    for key, sequence in per_key.items():
        assert sequence == sorted(sequence), f"{key} came back out of order"
        assert len(partition_of_key[key]) == 1, f"{key} was spread over partitions"


def test_read_committed_consumer_sees_only_committed_transactions(
    bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("transactions", partitions=2)
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"lakecast-test-{uuid.uuid4().hex}"
    )
    producer.init_transactions()

    producer.begin_transaction()
    for i in range(5):
        producer.send(topic, key=b"k", value=f"aborted-{i}".encode())
    producer.flush()
    producer.abort_transaction()

    producer.begin_transaction()
    for i in range(5):
        producer.send(topic, key=b"k", value=f"committed-{i}".encode())
    producer.commit_transaction()
    producer.close()

    with _consumer(bootstrap, topic, isolation_level="read_committed") as consumer:
        committed = [value for _, value, _ in _read_to_end(consumer)]
    with _consumer(bootstrap, topic, isolation_level="read_uncommitted") as consumer:
        everything = [value for _, value, _ in _read_to_end(consumer)]

    assert committed == [f"committed-{i}" for i in range(5)]
    # The aborted records are in the log: the isolation level is what hides them.
    assert everything == [f"aborted-{i}" for i in range(5)] + committed
