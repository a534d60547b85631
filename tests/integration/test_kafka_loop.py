"""The transactional micro-batching loop against a real broker: every event counted.

Each test produces uuid-named input, runs ``run_loop`` in a thread with a trivial ``process``,
waits until the group's committed offsets reach the end of the input, stops the loop, and
reads the output and dead-letter topics with ``read_committed``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.structs import OffsetAndMetadata, TopicPartition

from lakecast.config import KafkaSettings, LoopSettings
from lakecast.errors import DataError
from lakecast.kafka import dlq, serde
from lakecast.kafka.batch import BatchReport, BatchResult, OutputRecord
from lakecast.kafka.clients import (
    DeliveryMode,
    TopicSpec,
    build_admin,
    build_consumer,
    build_producer,
    ensure_topics,
    transactional_id_for,
)
from lakecast.kafka.loop import LoopStats, _Buffer, _Rebalance, run_loop
from lakecast.testing.kafka import produce, read_committed

TIMEOUT_S = 25.0


def _event(i: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"e-{i}",
            "user_id": f"u-{i % 37}",
            "session_id": f"s-{i % 91}",
            "product_id": f"p-{i % 13}",
            "category": "books",
            "event_type": "view",
            "price": float(i % 50),
            "device": "mobile",
            "country": "FR",
            "ts": "2024-05-01T10:00:00Z",
        }
    )


def keyed(values: list[bytes]) -> list[tuple[bytes | None, bytes | None]]:
    """``values`` with the user id keys their events have (``u-<i % 37>``)."""
    return [(f"u-{i % 37}".encode(), value) for i, value in enumerate(values)]


def upper_process(out_topic: str) -> Callable[[list[ConsumerRecord]], BatchResult]:
    """Decode each event; output its id and upper-cased user id; bad ones are dead letters."""

    def process(records: list[ConsumerRecord]) -> BatchResult:
        good, bad = dlq.decode_each(records, serde.decode_event)
        outputs = [
            OutputRecord(
                out_topic,
                orjson.dumps({"event_id": event.event_id, "user": event.user_id.upper()}),
                key=record.key,
            )
            for record, event in good
        ]
        return BatchResult(outputs, bad)

    return process


class Worker:
    """``run_loop`` in a thread, with its own clients, as a worker process would run it."""

    def __init__(
        self,
        bootstrap: str,
        group: str,
        process: Callable[[list[ConsumerRecord]], BatchResult],
        *,
        topic: str,
        dlq_topic: str,
        mode: DeliveryMode = "exactly_once",
        max_batch: int = 200,
    ) -> None:
        settings = KafkaSettings(bootstrap_servers=bootstrap)
        consumer = build_consumer(settings, group_id=group, session_timeout_ms=10_000)
        tx_id = transactional_id_for(group) if mode == "exactly_once" else None
        producer = build_producer(settings, mode=mode, transactional_id=tx_id)
        self.stop = threading.Event()
        self.reports: list[BatchReport] = []
        self.stats: LoopStats | None = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.stats = run_loop(
                    consumer,
                    producer,
                    process,
                    topics=[topic],
                    dlq_topic=dlq_topic,
                    stop_event=self.stop,
                    loop=LoopSettings(
                        delivery=mode,
                        max_batch=max_batch,
                        max_wait_ms=50,
                        max_failures=3,
                        retry_backoff_s=0.1,
                    ),
                    on_batch=self.reports.append,
                )
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=run, name=f"loop-{group}", daemon=True)
        self.thread.start()

    def join(self) -> LoopStats:
        self.stop.set()
        self.thread.join(TIMEOUT_S)
        assert not self.thread.is_alive(), "the loop did not stop"
        if self.error is not None:
            raise self.error
        assert self.stats is not None
        return self.stats


def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        return dict(consumer.end_offsets(parts))
    finally:
        consumer.close()


def committed(admin: KafkaAdminClient, group: str) -> dict[TopicPartition, int]:
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    except KafkaError:  # the coordinator is still loading (first group of a fresh broker)
        return {}
    return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def wait_committed(
    admin: KafkaAdminClient, group: str, target: dict[TopicPartition, int], *workers: Worker
) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        for worker in workers:
            if worker.error is not None:
                raise worker.error
        if committed(admin, group) == target:
            return
        time.sleep(0.25)
    pytest.fail(f"group {group} committed {committed(admin, group)}, expected {target}")


def wait_for_members(admin: KafkaAdminClient, group: str, count: int, *workers: Worker) -> None:
    """Until the group is Stable with ``count`` members, each with an assignment."""
    deadline = time.monotonic() + TIMEOUT_S
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        for worker in workers:
            if worker.error is not None:
                raise worker.error
        info = admin.describe_groups([group]).get(group) or {}
        members = info.get("members") or []
        state = info.get("group_state", info.get("state"))
        if str(state) == "Stable" and len(members) == count:
            return
        time.sleep(0.1)
    pytest.fail(f"group {group} never had {count} stable members: {info}")


@pytest.fixture
def admin(bootstrap: str) -> Iterator[KafkaAdminClient]:
    client = build_admin(KafkaSettings(bootstrap_servers=bootstrap))
    yield client
    client.close()


def output_ids(records: list[ConsumerRecord]) -> Counter[str]:
    return Counter(orjson.loads(r.value)["event_id"] for r in records)


def test_exactly_once_one_output_per_input(
    bootstrap: str, topic_factory: Callable[..., str], consumer_group: str, admin: KafkaAdminClient
) -> None:
    source, out, dead = topic_factory("in", 3), topic_factory("out", 3), topic_factory("dlq")
    produce(bootstrap, source, keyed([_event(i) for i in range(2_000)]))
    ends = end_offsets(bootstrap, source)

    worker = Worker(bootstrap, consumer_group, upper_process(out), topic=source, dlq_topic=dead)
    wait_committed(admin, consumer_group, ends, worker)
    stats = worker.join()

    outputs = read_committed(bootstrap, out, at_least=2_000)
    assert output_ids(outputs) == Counter(f"e-{i}" for i in range(2_000))
    assert {orjson.loads(r.value)["user"] for r in outputs} == {f"U-{i}" for i in range(37)}
    assert read_committed(bootstrap, dead, at_least=0) == []
    assert stats.records == 2_000
    assert stats.outputs == 2_000
    assert stats.aborted == 0


def test_bad_records_go_to_the_dlq_and_the_rest_is_output(
    bootstrap: str, topic_factory: Callable[..., str], consumer_group: str, admin: KafkaAdminClient
) -> None:
    source, out, dead = topic_factory("in", 2), topic_factory("out", 2), topic_factory("dlq")
    values = [_event(i) for i in range(300)]
    malformed = {50: b"{oops", 120: orjson.dumps({"event_id": "e-120"}), 199: b""}
    values = [malformed.get(i, value) for i, value in enumerate(values)]
    poisoned = {"e-7", "e-77", "e-250"}  # the "model" raises for these
    decode_and_upper = upper_process(out)

    def process(records: list[ConsumerRecord]) -> BatchResult:
        for record in records:
            try:
                event_id = serde.decode_event(record.value).event_id
            except DataError:
                continue  # decode_and_upper dead-letters it
            if event_id in poisoned:
                raise ValueError(f"model failed on {event_id}")
        return decode_and_upper(records)

    produce(bootstrap, source, keyed(values))
    ends = end_offsets(bootstrap, source)
    worker = Worker(bootstrap, consumer_group, process, topic=source, dlq_topic=dead, max_batch=64)
    wait_committed(admin, consumer_group, ends, worker)
    stats = worker.join()

    bad_indexes = set(malformed) | {int(e[2:]) for e in poisoned}
    expected = Counter(f"e-{i}" for i in range(300) if i not in bad_indexes)
    assert output_ids(read_committed(bootstrap, out, at_least=len(expected))) == expected

    letters = read_committed(bootstrap, dead, at_least=len(bad_indexes))
    decoded = [dlq.decode_dead_letter(r.value) for r in letters]
    assert sorted(d.payload for d in decoded) == sorted(values[i] for i in bad_indexes)
    by_payload = {d.payload: d for d in decoded}
    for event_id in poisoned:
        letter = by_payload[values[int(event_id[2:])]]
        assert letter.kind == "ValueError"
        assert letter.message == f"model failed on {event_id}"
    assert by_payload[b"{oops"].kind == "InvalidRecordError"
    assert "'user_id'" in by_payload[malformed[120]].message
    # The source coordinates point at the original record.
    originals = read_committed(bootstrap, source, at_least=300)
    at = {(r.partition, r.offset): r.value for r in originals}
    assert all(at[(d.partition, d.offset)] == d.payload and d.topic == source for d in decoded)
    assert stats.dead_letters == len(bad_indexes)
    assert stats.isolated >= 1


def test_at_least_once_delivers_every_event(
    bootstrap: str, topic_factory: Callable[..., str], consumer_group: str, admin: KafkaAdminClient
) -> None:
    source, out, dead = topic_factory("in", 3), topic_factory("out", 3), topic_factory("dlq")
    produce(bootstrap, source, keyed([_event(i) for i in range(1_000)]))
    ends = end_offsets(bootstrap, source)

    worker = Worker(
        bootstrap,
        consumer_group,
        upper_process(out),
        topic=source,
        dlq_topic=dead,
        mode="at_least_once",
    )
    wait_committed(admin, consumer_group, ends, worker)
    worker.join()

    seen = output_ids(read_committed(bootstrap, out, at_least=1_000))
    assert set(seen) == {f"e-{i}" for i in range(1_000)}
    # A clean run repeats nothing; duplicates are only allowed after a failure.
    assert max(seen.values()) == 1


def test_stop_and_restart_loses_nothing_and_duplicates_nothing(
    bootstrap: str, topic_factory: Callable[..., str], consumer_group: str, admin: KafkaAdminClient
) -> None:
    source, out, dead = topic_factory("in", 3), topic_factory("out", 3), topic_factory("dlq")
    produce(bootstrap, source, keyed([_event(i) for i in range(2_000)]))
    ends = end_offsets(bootstrap, source)

    first = Worker(
        bootstrap, consumer_group, upper_process(out), topic=source, dlq_topic=dead, max_batch=40
    )
    deadline = time.monotonic() + TIMEOUT_S
    while sum(r.records for r in first.reports) < 500 and time.monotonic() < deadline:
        time.sleep(0.02)
    first_stats = first.join()
    stopped_at = committed(admin, consumer_group)
    assert 500 <= sum(stopped_at.values()) < 2_000, "the first run should stop mid-stream"
    assert sum(stopped_at.values()) == first_stats.records

    second = Worker(bootstrap, consumer_group, upper_process(out), topic=source, dlq_topic=dead)
    wait_committed(admin, consumer_group, ends, second)
    second_stats = second.join()

    assert first_stats.records + second_stats.records == 2_000
    assert output_ids(read_committed(bootstrap, out, at_least=2_000)) == Counter(
        f"e-{i}" for i in range(2_000)
    )


def test_two_workers_share_the_partitions_exactly_once(
    bootstrap: str, topic_factory: Callable[..., str], consumer_group: str, admin: KafkaAdminClient
) -> None:
    source, out, dead = topic_factory("in", 4), topic_factory("out", 2), topic_factory("dlq")
    produce(bootstrap, source, keyed([_event(i) for i in range(200)]))

    one = Worker(bootstrap, consumer_group, upper_process(out), topic=source, dlq_topic=dead)
    while not one.reports and one.error is None:
        time.sleep(0.02)
    two = Worker(bootstrap, consumer_group, upper_process(out), topic=source, dlq_topic=dead)
    # The rest arrives once both members hold partitions: whoever owns a partition then
    # scores what lands on it, so neither can finish the stream alone.
    wait_for_members(admin, consumer_group, 2, one, two)
    produce(bootstrap, source, keyed([_event(i) for i in range(200, 2_000)]))
    ends = end_offsets(bootstrap, source)
    wait_committed(admin, consumer_group, ends, one, two)
    stats = [one.join(), two.join()]

    assert output_ids(read_committed(bootstrap, out, at_least=2_000)) == Counter(
        f"e-{i}" for i in range(2_000)
    )
    assert sum(s.records for s in stats) == 2_000
    assert all(s.records > 0 for s in stats), "both workers should have owned partitions"


def test_a_batch_that_cannot_commit_is_split_and_only_the_input_at_fault_is_dead(
    bootstrap: str, topic_factory: Callable[..., str], consumer_group: str, admin: KafkaAdminClient
) -> None:
    # Issue 13: this batch used to abort on every retry until the loop exited, and a
    # restarted loop stalled on it again. Now its halves commit alone until the input is found.
    source, out, dead = topic_factory("in"), topic_factory("out"), topic_factory("dlq")
    produce(bootstrap, source, keyed([_event(i) for i in range(400)]))
    ends = end_offsets(bootstrap, source)
    upper = upper_process(out)

    def oversized_at_250(records: list[ConsumerRecord]) -> BatchResult:
        result = upper(records)
        if any(r.offset == 250 for r in records):
            # Larger than the producer's max_request_size, and without its source: the send
            # fails, the transaction aborts, and the batch is split to find the input.
            result.outputs.append(OutputRecord(out, b"x" * 2_000_000))
        return result

    worker = Worker(
        bootstrap, consumer_group, oversized_at_250, topic=source, dlq_topic=dead, max_batch=100
    )
    wait_committed(admin, consumer_group, ends, worker)
    stats = worker.join()
    assert stats.split >= 1
    # The aborted attempts left nothing behind: every other input has exactly one output.
    assert output_ids(read_committed(bootstrap, out, at_least=399)) == Counter(
        f"e-{i}" for i in range(400) if i != 250
    )
    [letter] = [
        dlq.decode_dead_letter(r.value) for r in read_committed(bootstrap, dead, at_least=1)
    ]
    assert (letter.offset, letter.kind) == (250, "output_too_large")
    assert "max_request_size" in letter.message


def test_a_partition_handed_back_is_read_from_the_group_committed_offset(
    bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    """After any rebalance a member reads from the group's committed offsets, not from where
    it was: kafka-python keeps the position of a partition handed back to the member that held
    it, and another member may have committed it in between (a broker kill -9 with two workers
    doubled ~800 predictions so). Here the committed offset is moved under the member (4,
    below its position 10) and it rejoins."""
    topic = topic_factory("handback")
    produce(bootstrap, topic, keyed([b"v%d" % i for i in range(10)]))
    tp = TopicPartition(topic, 0)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"handback-{time.monotonic_ns()}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    try:
        consumer.subscribe([topic], listener=_Rebalance(consumer, _Buffer()))
        first = _poll_offsets(consumer, until=10)
        assert first == list(range(10))
        consumer.commit({tp: OffsetAndMetadata(4, "", -1)})
        consumer._coordinator.request_rejoin()
        assert _poll_offsets(consumer, until=6) == [4, 5, 6, 7, 8, 9]
    finally:
        consumer.close()


def test_an_offset_fetch_from_before_a_rebalance_is_not_used_after_it(
    bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    """kafka-python caches a committed-offset fetch that its caller gave up waiting for, keyed
    by the partition set alone, and hands the cached answer to the next fetch of the same set,
    even in a later generation (Java keys it by generation too). A fetch given up while no
    offset was committed yet, answered later with "none", made a member re-read a partition
    from offset 0 after a rebalance that handed the same set back: the 14,354 doubled
    predictions of one worker-kill trial. Here such a fetch is left behind, the group commits
    4, and the member rejoins: it must read from 4, not from the stale "none"."""
    topic = topic_factory("stalefetch")
    produce(bootstrap, topic, keyed([b"v%d" % i for i in range(10)]))
    tp = TopicPartition(topic, 0)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"stalefetch-{time.monotonic_ns()}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    try:
        consumer.subscribe([topic], listener=_Rebalance(consumer, _Buffer()))
        assert _poll_offsets(consumer, until=10) == list(range(10))
        coordinator = consumer._coordinator
        with pytest.raises(KafkaTimeoutError):
            coordinator.fetch_committed_offsets({tp}, timeout_ms=0)
        [left_behind] = coordinator._offset_fetch_futures.values()
        deadline = time.monotonic() + TIMEOUT_S
        while not left_behind.is_done and time.monotonic() < deadline:
            consumer.poll(timeout_ms=100)
        assert left_behind.succeeded() and left_behind.value == {}  # "nothing committed"
        consumer.commit({tp: OffsetAndMetadata(4, "", -1)})
        coordinator.request_rejoin()
        assert _poll_offsets(consumer, until=6) == [4, 5, 6, 7, 8, 9]
    finally:
        consumer.close()


def _poll_offsets(consumer: KafkaConsumer, *, until: int) -> list[int]:
    offsets: list[int] = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(offsets) < until and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            offsets.extend(record.offset for record in records)
    return offsets


def test_ensure_topics_creates_once(bootstrap: str, admin: KafkaAdminClient) -> None:
    name = f"ensure-{time.monotonic_ns()}"
    specs = [TopicSpec(name, partitions=2, configs={"retention.ms": "600000"})]
    assert ensure_topics(admin, specs) == [name]
    assert ensure_topics(admin, specs) == []
    assert sorted(end_offsets(bootstrap, name)) == [
        TopicPartition(name, 0),
        TopicPartition(name, 1),
    ]
