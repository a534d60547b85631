"""The loop's pure parts: isolating a failing record, offsets to commit, collecting a batch,
stop signals."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any, NamedTuple

import pytest
from kafka.structs import MemberState, OffsetAndMetadata, TopicPartition

from lakecast.kafka.dlq import DeadLetter
from lakecast.kafka.loop import (
    BatchLimit,
    BatchResult,
    OutputRecord,
    _Buffer,
    _collect,
    _run_batch,
    first_offsets,
    next_offsets,
    process_isolating,
)
from lakecast.kafka.shutdown import install_stop_handlers


class Record(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def _records() -> list[Any]:
    return [Record("t", i % 2, 10 + i, None, f"v{i}".encode()) for i in range(6)]


def echo_unless_poisoned(records: list[Any]) -> BatchResult:
    if any(r.value == b"v3" for r in records):
        msg = "model failed on v3"
        raise ValueError(msg)
    return BatchResult([OutputRecord("out", r.value) for r in records])


def test_a_batch_that_works_is_processed_once() -> None:
    calls: list[int] = []

    def process(records: list[Any]) -> BatchResult:
        calls.append(len(records))
        return echo_unless_poisoned([r for r in records if r.value != b"v3"])

    result, isolated = process_isolating(process, _records())
    assert not isolated
    assert calls == [6]
    assert [o.value for o in result.outputs] == [b"v0", b"v1", b"v2", b"v4", b"v5"]


def test_a_failing_batch_is_split_and_only_the_bad_record_is_dead() -> None:
    result, isolated = process_isolating(echo_unless_poisoned, _records())
    assert isolated
    assert [o.value for o in result.outputs] == [b"v0", b"v1", b"v2", b"v4", b"v5"]
    assert [(d.record.offset, d.kind, d.message) for d in result.dead_letters] == [
        (13, "ValueError", "model failed on v3")
    ]


def test_notes_of_a_split_batch_come_from_the_calls_that_returned() -> None:
    # The worker's metrics travel as notes: the call that raised for the whole batch left
    # none, so each record is counted once, by its own call.
    def noting(records: list[Any]) -> BatchResult:
        result = echo_unless_poisoned(records)
        result.notes.append([r.offset for r in records])
        return result

    result, isolated = process_isolating(noting, _records())
    assert isolated
    assert result.notes == [[10], [11], [12], [14], [15]]


class _Delivery:
    """The producer side of a batch, kept in memory: what was sent, nothing committed."""

    def __init__(self) -> None:
        self.producer = self
        self.sent: list[str] = []

    def send(self, topic: str, **_: Any) -> None:
        self.sent.append(topic)

    def begin(self) -> None: ...

    def commit(self, offsets: Any, sent: Any) -> None: ...


def test_a_report_names_the_kind_of_every_dead_letter_of_a_split_batch() -> None:
    # The worker counts dead letters by kind from the report: those made by
    # process_isolating for a record that raised alone must be there too.
    def process(records: list[Any]) -> BatchResult:
        result = echo_unless_poisoned(records)  # raises for v3 ...
        for record in records:
            if record.value == b"v5":  # ... and dead-letters v5 itself
                result.dead_letters.append(DeadLetter(record, "invalid_field", "bad v5"))
        return result

    delivery = _Delivery()
    report = _run_batch(delivery, process, _records(), "t.dlq")  # type: ignore[arg-type]
    assert report.isolated
    assert sorted(report.dead_letter_kinds) == ["ValueError", "invalid_field"]
    assert report.dead_letters == 2
    assert sorted(delivery.sent) == ["out"] * 5 + ["t.dlq"] * 2


def test_next_offsets_are_one_past_the_last_record_of_each_partition() -> None:
    assert next_offsets(_records()) == {
        TopicPartition("t", 0): OffsetAndMetadata(15, "", -1),
        TopicPartition("t", 1): OffsetAndMetadata(16, "", -1),
    }
    assert first_offsets(_records()) == {TopicPartition("t", 0): 10, TopicPartition("t", 1): 11}


class ScriptedConsumer:
    """Answers each ``poll`` with the next scripted batch, and notes the timeouts asked for."""

    def __init__(self, *polls: list[Any]) -> None:
        self.polls = list(polls)
        self.timeouts: list[int] = []

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        self.timeouts.append(timeout_ms)
        records = self.polls.pop(0)[:max_records] if self.polls else []
        return {TopicPartition("t", 0): records} if records else {}

    def group_metadata(self) -> Any:
        return type("Metadata", (), {"state": MemberState.STABLE})()

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("t", 0)}


def _collected(consumer: ScriptedConsumer, max_batch: int, top_up_ms: int = 3) -> list[int]:
    buffer = _Buffer()
    batch = _collect(consumer, buffer, max_batch, 50, top_up_ms, threading.Event())  # type: ignore[arg-type]
    return [record.offset for record in batch]


def test_a_batch_is_topped_up_once_by_a_short_fetch() -> None:
    records = [Record("t", 0, i, None, b"v") for i in range(4)]
    consumer = ScriptedConsumer(records[:2], records[2:3], records[3:])
    assert _collected(consumer, max_batch=10) == [0, 1, 2]
    assert consumer.timeouts[1:] == [3]  # the first waited up to max_wait_ms
    assert 0 < consumer.timeouts[0] <= 50


def test_a_full_batch_is_not_topped_up_and_no_top_up_means_no_wait() -> None:
    records = [Record("t", 0, i, None, b"v") for i in range(4)]
    consumer = ScriptedConsumer(records[:2], records[2:])
    assert _collected(consumer, max_batch=2) == [0, 1]
    assert len(consumer.timeouts) == 1
    consumer = ScriptedConsumer(records[:2], records[2:])
    assert _collected(consumer, max_batch=10, top_up_ms=0) == [0, 1, 2, 3]
    assert consumer.timeouts[1:] == [0]


def test_an_idle_wait_ends_empty_at_max_wait() -> None:
    consumer = ScriptedConsumer()
    assert _collected(consumer, max_batch=10) == []
    assert consumer.timeouts[-1] == 0


def test_a_backlog_is_taken_in_batches_that_double_up_to_the_most() -> None:
    limit = BatchLimit(most=2000)
    sizes = []
    for _ in range(5):  # a lasting backlog: every batch comes full
        sizes.append(limit.current)
        limit.taken(limit.current)
    assert sizes == [500, 1000, 2000, 2000, 2000]
    limit.taken(120)  # caught up
    assert limit.current == 500
    small = BatchLimit(most=64)
    small.taken(64)
    assert (small.start, small.current) == (64, 64)


def test_sigterm_sets_the_stop_event_and_handlers_are_restored() -> None:
    stop = threading.Event()
    before = signal.getsignal(signal.SIGTERM)
    restore = install_stop_handlers(stop)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(2.0)
        with pytest.raises(SystemExit) as caught:
            os.kill(os.getpid(), signal.SIGTERM)  # a second signal while stopping
        assert caught.value.code == 128 + signal.SIGTERM
    finally:
        restore()
    assert signal.getsignal(signal.SIGTERM) == before
