"""The micro-batching consume -> transform -> produce loop of every streaming service.

One batch at a time: collect up to ``max_batch`` records (what has arrived, waiting at most
``max_wait_ms`` for the first; :class:`BatchLimit` splits a backlog), call ``process`` on
them, then write its outputs and dead letters and the batch's offsets together (see
:mod:`lakecast.kafka.delivery`). A transaction is never open across a ``poll()``, and
rebalances happen only inside ``poll()``, so partitions are always given up with nothing
pending; records buffered from a revoked partition are dropped, and its next owner reads
them again from the committed offset.

Each batch is committed by :func:`lakecast.kafka.poison.run_splitting`, which keeps one bad
record (one ``process`` raises for, or whose output cannot be produced) from stalling its
partition. Only faults that are not about one record end the loop: a broker away past
``max_failures`` tries, a fenced producer, a dead-letter topic that refuses even a dead
letter without its payload.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import MemberState, TopicPartition

from lakecast.config import LoopSettings
from lakecast.errors import StreamError
from lakecast.kafka.batch import BatchReport, Process, first_offsets
from lakecast.kafka.clients import await_topics
from lakecast.kafka.delivery import (
    FATAL_PRODUCER_ERRORS,
    Delivery,
    FatalDeliveryError,
    make_delivery,
)
from lakecast.kafka.groups import leave_on_close
from lakecast.kafka.poison import run_splitting

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0
# kafka-python's default, for a producer whose config does not say.
DEFAULT_MAX_REQUEST_SIZE = 1_048_576


@dataclass(slots=True)
class LoopStats:
    batches: int = 0
    records: int = 0
    outputs: int = 0
    dead_letters: int = 0
    aborted: int = 0
    isolated: int = 0
    split: int = 0  # batches split because an output could not be produced


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


class _Buffer:
    """Records polled but not yet processed."""

    def __init__(self) -> None:
        self.records: list[ConsumerRecord] = []
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

    def drop(self, partitions: set[TopicPartition]) -> int:
        """Forget the records of ``partitions``; how many there were."""
        gone = {(tp.topic, tp.partition) for tp in partitions}
        with self._lock:
            kept = [r for r in self.records if (r.topic, r.partition) not in gone]
            dropped, self.records = len(self.records) - len(kept), kept
        return dropped

    def __len__(self) -> int:
        return len(self.records)


class _Rebalance(ConsumerRebalanceListener):
    """What the loop does when the group moves partitions: the buffered records of a
    partition given up are dropped, and where it was read up to is forgotten.

    Its own class, not the buffer's: kafka-python calls a listener only if it is truthy,
    and a buffer with a ``__len__`` is falsy when empty, as it nearly always is during a
    rebalance (this skipped every callback before).
    """

    def __init__(self, consumer: KafkaConsumer, buffer: _Buffer) -> None:
        self.consumer = consumer
        self.buffer = buffer

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Runs inside poll(): no transaction is open, so nothing is pending.
        dropped = self.buffer.drop(revoked)
        forget_positions(self.consumer, revoked)
        log.info("partitions revoked: %s (dropped %d buffered records)", sorted(revoked), dropped)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        discard_offset_fetches(self.consumer)
        log.info("partitions assigned: %s", sorted(assigned))

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self.on_partitions_revoked(lost)


def forget_positions(consumer: KafkaConsumer, partitions: set[TopicPartition]) -> None:
    """Make the consumer read ``partitions`` from the group's committed offsets if they are
    assigned to it again, as Java's consumer does after an eager revocation.

    kafka-python keeps a partition's fetch position when a rebalance hands the partition back
    to the member that held it. That position is stale whenever another member committed the
    partition in between: seen after a broker kill -9 with two workers, where one worker's
    membership expired during the restart, the other owned all partitions for a generation
    and committed past it, and the first, handed its partitions back, read on from where it
    had been and doubled ~800 committed predictions. The committed offset is always right:
    a transaction is never open across a rebalance, so for a member that kept the partition
    it equals its own position. The fetch asks for stable offsets (``read_committed``), so
    it waits for a transaction still committing offsets for the partition (KIP-447).
    """
    states = consumer._subscription.assignment  # kafka-python has no public call for this
    for tp in partitions:
        state = states.get(tp)
        if state is not None:
            state._position = None  # missing: the next poll fetches the committed offset
            state.drop_pending_record_batch = True


def discard_offset_fetches(consumer: KafkaConsumer) -> None:
    """Drop the committed-offset fetches kafka-python keeps from before this assignment.

    kafka-python caches a fetch whose caller stopped waiting (a ``poll`` timeout) and gives
    its answer to the next fetch of the same partition set, in any later generation (Java's
    consumer also checks the generation). A fetch left behind while nothing was committed
    yet answered "no offset", and after a rebalance that handed the same set back the member
    reset to ``earliest`` and read committed partitions again from offset 0: 14,354 doubled
    predictions in one worker-kill trial. Offsets fetched in an older generation are stale
    whenever another member committed in between, so none survives an assignment.
    """
    consumer._coordinator._offset_fetch_futures.clear()  # no public call for this either


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
    loop: LoopSettings | None = None,
    on_batch: Callable[[BatchReport], None] | None = None,
    close: bool = True,
) -> LoopStats:
    """Consume ``topics``, transform with ``process``, produce, until ``stop_event`` is set.

    ``loop`` says how to batch and commit (default: :class:`LoopSettings`' defaults, the
    worker's). The consumer must be built with a group id and not subscribed (see
    :func:`lakecast.kafka.clients.build_consumer`); in ``exactly_once`` delivery the producer
    must have a transactional id. When stopped, the batch being collected is finished and
    committed, then (with ``close``) the consumer leaves the group and both clients close.

    Raises:
        FatalDeliveryError: the producer was fenced or broke; the process should restart.
        StreamError: a batch failed to commit ``loop.max_failures`` times in a row for a
            reason that is not one of its records (with the default backoff, about 20 s of a
            broker being away), or the dead-letter topic refused a dead letter without its
            payload.
    """
    loop = loop or LoopSettings()
    delivery = make_delivery(loop.delivery, producer, consumer)
    max_request_size = int(producer.config.get("max_request_size", DEFAULT_MAX_REQUEST_SIZE))
    stats = LoopStats()
    buffer = _Buffer()
    limit = BatchLimit(loop.max_batch)
    try:
        delivery.start()
        if not await_topics(consumer, topics):
            log.warning("subscribing to %s before the topics' metadata arrived", list(topics))
        consumer.subscribe(topics=list(topics), listener=_Rebalance(consumer, buffer))
        failures = 0
        while not stop_event.is_set():
            batch = _next_batch(consumer, buffer, limit, loop, stop_event)
            if not batch:
                continue
            committed, error = _commit(delivery, process, batch, dlq_topic, max_request_size)
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
            failures = _after_abort(consumer, len(rest), error, failures, loop, stop_event)
    finally:
        _shut_down(delivery, consumer, producer, close=close)
    return stats


def _next_batch(
    consumer: KafkaConsumer,
    buffer: _Buffer,
    limit: BatchLimit,
    loop: LoopSettings,
    stop_event: threading.Event,
) -> list[ConsumerRecord]:
    """The next batch to process, or none while there is nothing or the group is moving."""
    batch = _collect(consumer, buffer, limit.current, loop.max_wait_ms, loop.top_up_ms, stop_event)
    limit.taken(len(batch))
    if not batch:
        group_settled(consumer)  # an idle member must finish a pending rebalance too
        return []
    if not group_settled(consumer):
        _rewind(consumer, batch)  # fetched again once the assignment is settled
        return []
    return batch


def _commit(
    delivery: Delivery,
    process: Process,
    batch: list[ConsumerRecord],
    dlq_topic: str,
    max_request_size: int,
) -> tuple[list[BatchReport], KafkaError | None]:
    """Process and commit ``batch``: the reports of the parts committed, and the broker's
    error that stopped the rest (None: all of it committed).

    Raises:
        FatalDeliveryError: the producer was fenced or is unusable.
    """
    committed: list[BatchReport] = []
    try:
        run_splitting(delivery, process, batch, dlq_topic, max_request_size, committed)
    except FATAL_PRODUCER_ERRORS as exc:
        msg = f"commit batch of {len(batch)} records: producer fenced or unusable ({exc!r})"
        raise FatalDeliveryError(msg) from exc
    except KafkaError as exc:
        return committed, exc
    return committed, None


def _after_abort(
    consumer: KafkaConsumer,
    records: int,
    error: KafkaError,
    failures: int,
    loop: LoopSettings,
    stop_event: threading.Event,
) -> int:
    """What follows an aborted batch of ``records``: rejoin, or back off; the failures in a row.

    Raises:
        StreamError: the broker failed ``loop.max_failures`` times in a row.
    """
    if isinstance(error, CommitFailedError):
        # The group moved on (this member was removed or is a generation behind): not a
        # broker failure. Rejoin, and let the new owner of each partition redo.
        log.warning("batch of %d aborted, rejoining the group: %r", records, error)
        consumer._coordinator.request_rejoin()  # kafka-python has no public call
        return failures
    failures += 1
    log.warning("batch of %d aborted (%d in a row): %r", records, failures, error)
    if failures >= loop.max_failures:
        msg = (
            f"commit batch of {records}: the broker failed {failures} times in a row "
            f"(not a fault of one record: those are dead-lettered), last {error!r}"
        )
        raise StreamError(msg) from error
    # Exponential, capped: rides out a broker restart without hammering it.
    stop_event.wait(min(loop.retry_backoff_s * 2 ** (failures - 1), MAX_BACKOFF_S))
    return failures


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
            leave_on_close(consumer)
            consumer.close()
        finally:
            producer.close()
