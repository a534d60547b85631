"""The loop's pure parts: isolating a failing record, offsets to commit, stop signals."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any, NamedTuple

import pytest
from kafka.structs import OffsetAndMetadata, TopicPartition

from lakecast.kafka.loop import (
    BatchResult,
    OutputRecord,
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


def test_next_offsets_are_one_past_the_last_record_of_each_partition() -> None:
    assert next_offsets(_records()) == {
        TopicPartition("t", 0): OffsetAndMetadata(15, "", -1),
        TopicPartition("t", 1): OffsetAndMetadata(16, "", -1),
    }
    assert first_offsets(_records()) == {TopicPartition("t", 0): 10, TopicPartition("t", 1): 11}


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
