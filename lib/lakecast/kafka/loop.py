"""The micro-batching consume -> transform -> produce loop of every streaming service.

One batch at a time: collect up to ``max_batch`` records (what has arrived, waiting at most
``max_wait_ms`` for the first; :class:`BatchLimit` splits a backlog), call ``process`` on
them, then write its outputs and dead letters and the batch's offsets together (see
:mod:`lakecast.kafka.delivery`). A transaction is never open across a ``poll()``, and
rebalances happen only inside ``poll()``, so partitions are always given up with nothing
pending; records buffered from a revoked partition are dropped, and its next owner reads
them again from the committed offset.

A bad record never stalls its partition: ``process`` reports records it cannot handle as
dead letters, and if ``process`` raises for a whole batch, each record is processed alone so
that only the one that fails goes to the dead-letter topic.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError
from kafka.producer.future import FutureRecordMetadata
from kafka.structs import MemberState, OffsetAndMetadata, TopicPartition

from lakecast.errors import StreamError
from lakecast.kafka.clients import await_topics
from lakecast.kafka.delivery import (
    FATAL_PRODUCER_ERRORS,
    Delivery,
    FatalDeliveryError,
    make_delivery,
)
from lakecast.kafka.dlq import DeadLetter, dead_letter_value

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 0.5 us, 3x, for every record
class OutputRecord:
    """A record for the producer: the value is already serialised."""

    topic: str
    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


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


@dataclass(slots=True)
class LoopStats:
    batches: int = 0
    records: int = 0
    outputs: int = 0
    dead_letters: int = 0
    aborted: int = 0
    isolated: int = 0


def process_isolating(process: Process, records: list[ConsumerRecord]) -> tuple[BatchResult, bool]:
    """Run ``process`` on the batch; if it raises, run it on each record alone.

    Returns:
        The result, and whether the batch had to be split. A record for which ``process``
        raises on its own becomes a dead letter carrying the exception's class and message.
    """
    try:
        return process(records), False
    except Exception:
        log.warning("process failed for a batch of %d records; isolating", len(records))
    result = BatchResult()
    for record in records:
        try:
            result.extend(process([record]))
        except Exception as exc:
            result.dead_letters.append(DeadLetter.from_exception(record, exc))
    return result, True


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


@dataclass(slots=True)
class BatchLimit:
    """How many records the next batch may take: doubling while batches come full, from
    ``start`` up to ``most``, and back to ``start`` after one that was not.

    A short backlog (what piled up during a pause: a collection, a slow commit) then goes
    out oldest first in short transactions instead of all behind one long one, while a
    lasting backlog still runs transactions of ``most`` records, which spread each commit's
    round trips furthest. Measured: after a 150 ms pause at 9,000 events/s, one batch of
    2,000 records took 130 ms to process and commit.
    """

    most: int
    start: int = 500
    current: int = field(init=False)

    def __post_init__(self) -> None:
        self.start = min(self.start, self.most)
        self.current = self.start

    def taken(self, records: int) -> None:
        full = records >= self.current
        self.current = min(self.most, self.current * 2) if full else self.start


class _Buffer(ConsumerRebalanceListener):
    """Records polled but not yet processed; forgets those of partitions given up."""

    def __init__(self, consumer: KafkaConsumer | None = None) -> None:
        self.records: list[ConsumerRecord] = []
        self.consumer = consumer
        self._lock = threading.Lock()

    def add(
        self, polled: dict[TopicPartition, list[ConsumerRecord]], owned: set[TopicPartition]
    ) -> None:
        with self._lock:
            for tp, records in polled.items():
                if tp in owned:
                    self.records.extend(records)

    def take(self, limit: int) -> list[ConsumerRecord]:
        with self._lock:
            batch, self.records = self.records[:limit], self.records[limit:]
            return batch

    def __len__(self) -> int:
        return len(self.records)

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Runs inside poll(): no transaction is open, so dropping is all there is to do ...
        gone = {(tp.topic, tp.partition) for tp in revoked}
        with self._lock:
            dropped = [r for r in self.records if (r.topic, r.partition) in gone]
            self.records = [r for r in self.records if (r.topic, r.partition) not in gone]
        # ... and rewinding: kafka-python keeps a partition's fetch position when the
        # rebalance hands it back to this member, which would skip the dropped records.
        if dropped and self.consumer is not None:
            _rewind(self.consumer, dropped)
        log.info(
            "partitions revoked: %s (dropped %d buffered records)", sorted(revoked), len(dropped)
        )

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions assigned: %s", sorted(assigned))

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self.on_partitions_revoked(lost)


def group_settled(consumer: KafkaConsumer) -> bool:
    """Whether the consumer holds a settled assignment (not mid-rebalance).

    kafka-python 3.0.x can leave a group leader half-joined: when it rejoins because the
    topic metadata changed, its own assignment step clears the reason to rejoin, a short
    ``poll`` gives up before the join completes, and no later ``poll`` finishes it. The
    member then stays REBALANCING with its generation current and its OLD partitions still
    fetched, so a transaction would commit records another member now owns (duplicates seen
    with two workers). Asking for a rejoin makes the next ``poll`` complete the rebalance.
    """
    if consumer.group_metadata().state is MemberState.STABLE:
        return True
    # kafka-python has no public way to ask for a rejoin.
    coordinator = consumer._coordinator
    if not coordinator.need_rejoin():
        log.info("consumer group rebalance left unfinished by the client; rejoining")
        coordinator.request_rejoin()
    return False


def _collect(
    consumer: KafkaConsumer,
    buffer: _Buffer,
    max_batch: int,
    max_wait_ms: int,
    top_up_ms: int,
    stop_event: threading.Event,
) -> list[ConsumerRecord]:
    """The next batch: wait up to ``max_wait_ms`` for a first record, then take what has
    arrived, topped up once by a fetch that waits at most ``top_up_ms`` (never waiting to
    fill the batch).

    The batch grows with the load by itself: the records that arrive while one batch commits
    make the next one, so a busy loop runs full batches and a quiet one answers at once
    (group commit). Waiting to fill a batch would add up to ``max_wait_ms`` to every event's
    latency and buy nothing at full load.

    The top-up: kafka-python fetches only inside ``poll()``, and a ``poll()`` that returns
    buffered records sends the next fetch without waiting for its answer. Untopped, a batch
    holds what the broker had when the previous batch started, and the answer to that fetch
    waits in the socket for a whole batch. One round trip more brings the batch up to now.
    """
    deadline = time.monotonic() + max_wait_ms / 1000
    topped_up = False
    while len(buffer) < max_batch and not stop_event.is_set():
        if not buffer:
            timeout_ms = max(0, int((deadline - time.monotonic()) * 1000))
        elif not topped_up:
            timeout_ms, topped_up = top_up_ms, True
        else:
            break
        polled = consumer.poll(timeout_ms=timeout_ms, max_records=max_batch - len(buffer))
        # Records fetched while the group is unsettled may be of partitions given away.
        if polled and group_settled(consumer):
            buffer.add(polled, set(consumer.assignment()))
        elif polled:
            _rewind_polled(consumer, polled)
        if not buffer and timeout_ms == 0:
            break
    return buffer.take(max_batch)


def _send(
    producer: KafkaProducer, result: BatchResult, dlq_topic: str
) -> list[FutureRecordMetadata]:
    sent = [
        producer.send(
            out.topic,
            value=out.value,
            key=out.key,
            headers=list(out.headers) if out.headers else None,
        )
        for out in result.outputs
    ]
    for letter in result.dead_letters:
        value = dead_letter_value(letter)
        sent.append(producer.send(dlq_topic, value=value, key=letter.record.key))
    return sent


def _rewind_polled(
    consumer: KafkaConsumer, polled: dict[TopicPartition, list[ConsumerRecord]]
) -> None:
    _rewind(consumer, [record for records in polled.values() for record in records])


def _rewind(consumer: KafkaConsumer, batch: list[ConsumerRecord]) -> None:
    owned = set(consumer.assignment())
    for tp, offset in first_offsets(batch).items():
        if tp in owned:
            consumer.seek(tp, offset)


def run_loop(
    consumer: KafkaConsumer,
    producer: KafkaProducer,
    process: Process,
    *,
    topics: Sequence[str],
    dlq_topic: str,
    stop_event: threading.Event,
    mode: str = "exactly_once",
    max_batch: int = 500,
    max_wait_ms: int = 100,
    top_up_ms: int = 3,
    max_failures: int = 8,
    retry_backoff_s: float = 0.5,
    on_batch: Callable[[BatchReport], None] | None = None,
    close: bool = True,
) -> LoopStats:
    """Consume ``topics``, transform with ``process``, produce, until ``stop_event`` is set.

    The consumer must be built with a group id and not subscribed (see
    :func:`lakecast.kafka.clients.build_consumer`); in ``exactly_once`` mode the producer
    must have a transactional id. When stopped, the batch being collected is finished and
    committed, then (with ``close``) the consumer leaves the group and both clients close.

    Raises:
        FatalDeliveryError: the producer was fenced or broke; the process should restart.
        StreamError: a batch failed to commit ``max_failures`` times in a row (with the
            default backoff, about 20 s of a broker being away).
    """
    if max_batch < 1 or max_wait_ms < 0 or top_up_ms < 0:
        msg = (
            "run_loop: need max_batch >= 1, max_wait_ms >= 0 and top_up_ms >= 0, got "
            f"{max_batch}, {max_wait_ms}, {top_up_ms}"
        )
        raise ValueError(msg)
    delivery = make_delivery(mode, producer, consumer)
    stats = LoopStats()
    buffer = _Buffer(consumer)
    limit = BatchLimit(max_batch)
    try:
        delivery.start()
        if not await_topics(consumer, topics):
            log.warning("subscribing to %s before the topics' metadata arrived", list(topics))
        consumer.subscribe(topics=list(topics), listener=buffer)
        failures = 0
        while not stop_event.is_set():
            batch = _collect(consumer, buffer, limit.current, max_wait_ms, top_up_ms, stop_event)
            limit.taken(len(batch))
            if not batch:
                group_settled(consumer)  # an idle member must finish a pending rebalance too
                continue
            if not group_settled(consumer):
                _rewind(consumer, batch)  # fetched again once the assignment is settled
                continue
            try:
                report = _run_batch(delivery, process, batch, dlq_topic)
            except FATAL_PRODUCER_ERRORS as exc:
                msg = f"commit batch of {len(batch)} records: producer fenced or unusable ({exc!r})"
                raise FatalDeliveryError(msg) from exc
            except CommitFailedError as exc:
                # The group moved on (this member was removed or is a generation behind): not
                # a broker failure. Abort, rejoin, and let the new owner of each partition redo.
                stats.aborted += 1
                log.warning("batch of %d aborted, rejoining the group: %r", len(batch), exc)
                delivery.abort()
                _rewind(consumer, batch)
                consumer._coordinator.request_rejoin()  # kafka-python has no public call
                continue
            except KafkaError as exc:
                failures += 1
                stats.aborted += 1
                log.warning("batch of %d aborted (%d in a row): %r", len(batch), failures, exc)
                delivery.abort()
                _rewind(consumer, batch)
                if failures >= max_failures:
                    msg = f"commit batch of {len(batch)}: failed {failures} times, last {exc!r}"
                    raise StreamError(msg) from exc
                # Exponential, capped: rides out a broker restart without hammering it.
                stop_event.wait(min(retry_backoff_s * 2 ** (failures - 1), MAX_BACKOFF_S))
                continue
            failures = 0
            _count(stats, report)
            if on_batch is not None:
                on_batch(report)
    finally:
        _shut_down(delivery, consumer, producer, close=close)
    return stats


def _run_batch(
    delivery: Delivery, process: Process, batch: list[ConsumerRecord], dlq_topic: str
) -> BatchReport:
    started = time.perf_counter()
    result, isolated = process_isolating(process, batch)
    processed = time.perf_counter()
    delivery.begin()
    sent = _send(delivery.producer, result, dlq_topic)
    delivery.commit(next_offsets(batch), sent)
    return BatchReport(
        records=len(batch),
        outputs=len(result.outputs),
        dead_letters=len(result.dead_letters),
        isolated=isolated,
        process_s=processed - started,
        commit_s=time.perf_counter() - processed,
        notes=tuple(result.notes),
        dead_letter_kinds=tuple(letter.kind for letter in result.dead_letters),
    )


def _count(stats: LoopStats, report: BatchReport) -> None:
    stats.batches += 1
    stats.records += report.records
    stats.outputs += report.outputs
    stats.dead_letters += report.dead_letters
    stats.isolated += int(report.isolated)


def _shut_down(
    delivery: Delivery, consumer: KafkaConsumer, producer: KafkaProducer, *, close: bool
) -> None:
    try:
        delivery.abort()  # only does something if we are leaving with a transaction open
    except FatalDeliveryError:
        log.exception("abort on shutdown failed")
    if close:
        try:
            consumer.close()
        finally:
            producer.close()
