"""What a batch is to the loop and to the ``process`` a service gives it.

``process`` (:data:`Process`) takes a batch of consumer records and returns a
:class:`BatchResult`: the :class:`OutputRecord` s to produce and the dead letters, the
ok/err split. Each transaction the loop commits is reported as a :class:`BatchReport`. A
batch's offsets: those it commits (:func:`next_offsets`) and those it is read again from
after an abort (:func:`first_offsets`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndMetadata, TopicPartition

from lakecast.kafka.dlq import DeadLetter, SourceRecord


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 0.5 us, 3x, for every record
class OutputRecord:
    """A record for the producer: the value is already serialised.

    ``source`` is the input it was made from: an output that cannot be produced then turns
    that input into a dead letter before the transaction begins (without it, the batch is
    split until the input is found).
    """

    topic: str
    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    source: SourceRecord | None = None


@dataclass(slots=True)
class BatchResult:
    """What ``process`` made of a batch: records to produce and records to dead-letter."""

    outputs: list[OutputRecord] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # What ``process`` wants back once the batch is committed (the worker's metrics). It
    # reaches ``on_batch`` in the report: an aborted batch, processed again, counts once.
    notes: list[Any] = field(default_factory=list)

    def extend(self, other: BatchResult) -> None:
        self.outputs.extend(other.outputs)
        self.dead_letters.extend(other.dead_letters)
        self.notes.extend(other.notes)


Process = Callable[[list[ConsumerRecord]], BatchResult]


@dataclass(frozen=True, slots=True)
class BatchReport:
    """One committed batch, for metrics: sizes and where the time went."""

    records: int
    outputs: int
    dead_letters: int
    isolated: bool  # process raised for the batch and each record was processed alone
    process_s: float
    commit_s: float
    notes: tuple[Any, ...] = ()  # the batch result's notes
    dead_letter_kinds: tuple[str, ...] = ()  # one per dead letter, those of process_isolating too
    split: bool = False  # a part of a batch split to find an input whose output was refused


def next_offsets(records: Iterable[ConsumerRecord]) -> dict[TopicPartition, OffsetAndMetadata]:
    """The offsets to commit after ``records``: one past the last record of each partition."""
    last: dict[tuple[str, int], int] = {}
    for record in records:
        where = (record.topic, record.partition)
        if record.offset >= last.get(where, -1):
            last[where] = record.offset
    return {TopicPartition(*where): OffsetAndMetadata(o + 1, "", -1) for where, o in last.items()}


def first_offsets(records: Iterable[ConsumerRecord]) -> dict[TopicPartition, int]:
    """Where each partition of a batch started: the position to rewind to after an abort."""
    starts: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        if tp not in starts or record.offset < starts[tp]:
            starts[tp] = record.offset
    return starts
