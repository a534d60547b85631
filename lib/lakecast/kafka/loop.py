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
that only the one that fails goes to the dead-letter topic. The same holds for an output that
cannot be produced (too large, not bytes, refused by the broker for what it holds): one over
the producer's ``max_request_size`` whose :attr:`OutputRecord.source` is known is
dead-lettered before the transaction begins; any other makes the commit fail with
:class:`~lakecast.kafka.delivery.OutputRejectedError`, and the batch is split in halves, each
processed and committed as its own transaction, until the one input is found and
dead-lettered (``output_too_large`` / ``output_rejected``). Only faults that are not about
one record end the loop: a broker away past ``max_failures`` tries, a fenced producer, a
dead-letter topic that refuses even a dead letter without its payload.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
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
    RECORD_ERRORS,
    Delivery,
    FatalDeliveryError,
    OutputRejectedError,
    make_delivery,
    rejected,
)
from lakecast.kafka.dlq import (
    OUTPUT_REJECTED,
    OUTPUT_TOO_LARGE,
    DeadLetter,
    SourceRecord,
    dead_letter_key,
    dead_letter_value,
)

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0
# What a record adds to its key, value and headers in a request (kafka-python's estimate for
# one record: a 61-byte batch header and up to ~25 bytes of lengths and deltas), rounded up.
RECORD_OVERHEAD_BYTES = 128
# kafka-python's default, for a producer whose config does not say.
DEFAULT_MAX_REQUEST_SIZE = 1_048_576


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


@dataclass(slots=True)
class LoopStats:
    batches: int = 0
    records: int = 0
    outputs: int = 0
    dead_letters: int = 0
    aborted: int = 0
    isolated: int = 0
    split: int = 0  # batches split because an output could not be produced


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
    producer: KafkaProducer, result: BatchResult, dlq_topic: str, *, with_payload: bool = True
) -> list[FutureRecordMetadata]:
    try:
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
            value = dead_letter_value(letter, with_payload=with_payload)
            key = dead_letter_key(letter) if with_payload else None
            sent.append(producer.send(dlq_topic, value=value, key=key))
    except RECORD_ERRORS as exc:  # over max_request_size: kafka-python checks in send
        raise rejected(exc) from exc
    except (TypeError, ValueError) as exc:  # a key or value that is not bytes, or both None
        msg = f"output record refused: {exc!r}"
        raise OutputRejectedError(msg, too_large=False) from exc
    return sent


def unproducible(result: BatchResult, max_request_size: int) -> list[tuple[SourceRecord, str, str]]:
    """Inputs of ``result`` with an output that cannot be produced: ``(source, kind,
    message)`` for each, found before anything is sent. Outputs without a ``source`` are not
    looked at (their send fails instead)."""
    room = max_request_size - RECORD_OVERHEAD_BYTES
    # One pass over every output (the common case finds none); the exact reason only for those.
    suspects = [
        out
        for out in result.outputs
        if type(out.value) is not bytes
        or (out.key is not None and type(out.key) is not bytes)
        or out.headers
        or len(out.value) + (len(out.key) if out.key else 0) > room
    ]
    found: dict[int, tuple[SourceRecord, str, str]] = {}
    for out in suspects:
        if out.source is None or id(out.source) in found:
            continue
        reason = _refusal(out, room, max_request_size)
        if reason is not None:
            found[id(out.source)] = (out.source, *reason)
    return list(found.values())


def _refusal(out: OutputRecord, room: int, max_request_size: int) -> tuple[str, str] | None:
    where = f"output to {out.topic!r}"
    if not isinstance(out.value, bytes | bytearray | memoryview):
        return OUTPUT_REJECTED, f"{where}: value is {type(out.value).__name__}, not bytes"
    if out.key is not None and not isinstance(out.key, bytes | bytearray | memoryview):
        return OUTPUT_REJECTED, f"{where}: key is {type(out.key).__name__}, not bytes"
    try:
        headers = sum(len(name.encode()) + len(value) for name, value in out.headers)
    except (AttributeError, TypeError, ValueError):
        return OUTPUT_REJECTED, f"{where}: headers must be (str, bytes) pairs"
    size = len(out.value) + len(out.key or b"") + headers
    if size > room:
        message = (
            f"{where} is {size} bytes (key {len(out.key or b'')}, value {len(out.value)}, "
            f"headers {headers}), over the producer's max_request_size of {max_request_size}"
        )
        return OUTPUT_TOO_LARGE, message
    return None


def _dead_letter_unproducible(result: BatchResult, max_request_size: int) -> None:
    """Replace the outputs of each input with an unproducible output by a dead letter."""
    found = unproducible(result, max_request_size)
    if not found:
        return
    gone = {id(source) for source, _, _ in found}
    result.outputs = [out for out in result.outputs if id(out.source) not in gone]
    for source, kind, message in found:
        log.warning(
            "dead-lettering %s[%d]@%d: %s", source.topic, source.partition, source.offset, message
        )
        result.dead_letters.append(DeadLetter(source, kind, message))


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
        StreamError: a batch failed to commit ``max_failures`` times in a row for a reason
            that is not one of its records (with the default backoff, about 20 s of a broker
            being away), or the dead-letter topic refused a dead letter without its payload.
    """
    if max_batch < 1 or max_wait_ms < 0 or top_up_ms < 0:
        msg = (
            "run_loop: need max_batch >= 1, max_wait_ms >= 0 and top_up_ms >= 0, got "
            f"{max_batch}, {max_wait_ms}, {top_up_ms}"
        )
        raise ValueError(msg)
    delivery = make_delivery(mode, producer, consumer)
    max_request_size = int(producer.config.get("max_request_size", DEFAULT_MAX_REQUEST_SIZE))
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
            committed: list[BatchReport] = []  # the parts of the batch committed
            try:
                run_splitting(delivery, process, batch, dlq_topic, max_request_size, committed)
                error: KafkaError | None = None
            except FATAL_PRODUCER_ERRORS as exc:
                msg = f"commit batch of {len(batch)} records: producer fenced or unusable ({exc!r})"
                raise FatalDeliveryError(msg) from exc
            except KafkaError as exc:
                error = exc
            for report in committed:
                _count(stats, report)
                if on_batch is not None:
                    on_batch(report)
            if error is None:
                failures = 0
                continue
            # The committed parts are a prefix of the batch (see run_splitting): the rest is
            # fetched and processed again.
            rest = batch[sum(report.records for report in committed) :]
            stats.aborted += 1
            delivery.abort()
            _rewind(consumer, rest)
            if isinstance(error, CommitFailedError):
                # The group moved on (this member was removed or is a generation behind): not
                # a broker failure. Rejoin, and let the new owner of each partition redo.
                log.warning("batch of %d aborted, rejoining the group: %r", len(rest), error)
                consumer._coordinator.request_rejoin()  # kafka-python has no public call
                continue
            failures += 1
            log.warning("batch of %d aborted (%d in a row): %r", len(rest), failures, error)
            if failures >= max_failures:
                msg = (
                    f"commit batch of {len(rest)}: the broker failed {failures} times in a row "
                    f"(not a fault of one record: those are dead-lettered), last {error!r}"
                )
                raise StreamError(msg) from error
            # Exponential, capped: rides out a broker restart without hammering it.
            stop_event.wait(min(retry_backoff_s * 2 ** (failures - 1), MAX_BACKOFF_S))
    finally:
        _shut_down(delivery, consumer, producer, close=close)
    return stats


def _run_batch(
    delivery: Delivery,
    process: Process,
    batch: list[ConsumerRecord],
    dlq_topic: str,
    max_request_size: int | None = None,
) -> BatchReport:
    """Process ``batch`` and commit it as one transaction.

    Raises:
        OutputRejectedError: an output cannot be produced (the transaction is left open:
            the caller aborts).
    """
    started = time.perf_counter()
    result, isolated = process_isolating(process, batch)
    if max_request_size is not None:
        _dead_letter_unproducible(result, max_request_size)
    processed = time.perf_counter()
    _deliver(delivery, result, batch, dlq_topic)
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


def _deliver(
    delivery: Delivery,
    result: BatchResult,
    batch: list[ConsumerRecord],
    dlq_topic: str,
    *,
    with_payload: bool = True,
) -> None:
    delivery.begin()
    sent = _send(delivery.producer, result, dlq_topic, with_payload=with_payload)
    delivery.commit(next_offsets(batch), sent)


def run_splitting(
    delivery: Delivery,
    process: Process,
    batch: list[ConsumerRecord],
    dlq_topic: str,
    max_request_size: int | None,
    committed: list[BatchReport],
) -> None:
    """Process and commit ``batch``; if an output cannot be produced, split the batch in
    halves, each processed and committed as its own transaction, recursively, until the one
    input is found and dead-lettered (as :func:`process_isolating` does for ``process``).

    A report is appended to ``committed`` for each transaction committed. They commit the
    batch's records in order, so what they hold is a prefix of ``batch`` (per partition too,
    since a batch holds each partition's records in offset order): after a broker failure
    the rest of the batch is what must be read again.

    Raises:
        KafkaError: the broker failed (``committed`` says what was committed before).
        StreamError: the dead-letter topic refuses even a dead letter without its payload.
    """
    try:
        committed.append(_run_batch(delivery, process, batch, dlq_topic, max_request_size))
        return
    except OutputRejectedError as exc:
        delivery.abort()
        if exc.by_broker:
            delivery.recover()
        if len(batch) == 1:
            committed.append(_dead_letter_alone(delivery, batch[0], exc, dlq_topic))
            return
        log.warning("batch of %d: %s; splitting it to find the input", len(batch), exc)
    half = len(batch) // 2
    for part in (batch[:half], batch[half:]):
        before = len(committed)
        run_splitting(delivery, process, part, dlq_topic, max_request_size, committed)
        for i in range(before, len(committed)):
            committed[i] = replace(committed[i], split=True)


def _dead_letter_alone(
    delivery: Delivery, record: ConsumerRecord, cause: OutputRejectedError, dlq_topic: str
) -> BatchReport:
    """Commit a dead letter for ``record``, whose output was refused, with its offset."""
    started = time.perf_counter()
    kind = OUTPUT_TOO_LARGE if cause.too_large else OUTPUT_REJECTED
    letter = DeadLetter(record, kind, f"an output of this record cannot be produced: {cause}")
    log.warning(
        "dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, cause
    )
    result = BatchResult(dead_letters=[letter])
    try:
        _deliver(delivery, result, [record], dlq_topic)
    except OutputRejectedError as exc:
        # Only the dead letter was sent: the dead-letter topic refused it (a smaller
        # max.message.bytes). Once more, without the payload.
        delivery.abort()
        if exc.by_broker:
            delivery.recover()
        log.warning("dead letter refused (%s); sending it without its payload", exc)
        try:
            _deliver(delivery, result, [record], dlq_topic, with_payload=False)
        except OutputRejectedError as again:
            delivery.abort()
            msg = (
                f"dead-letter topic {dlq_topic!r} refuses even a dead letter without its "
                f"payload ({again}); input {record.topic}[{record.partition}]@{record.offset}"
            )
            raise StreamError(msg) from again
    return BatchReport(
        records=1,
        outputs=0,
        dead_letters=1,
        isolated=False,
        process_s=0.0,
        commit_s=time.perf_counter() - started,
        dead_letter_kinds=(kind,),
    )


def _count(stats: LoopStats, report: BatchReport) -> None:
    stats.batches += 1
    stats.records += report.records
    stats.outputs += report.outputs
    stats.dead_letters += report.dead_letters
    stats.isolated += int(report.isolated)
    stats.split += int(report.split)


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
