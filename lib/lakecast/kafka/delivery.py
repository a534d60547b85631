"""How a micro-batch's output and its input offsets are made durable together.

``exactly_once`` (the default): outputs and the consumed offsets go into one Kafka
transaction (KIP-98), the offsets sent with the consumer's group metadata so that the broker
fences a zombie member of an older generation (KIP-447). Readers of our outputs use
``read_committed`` and see each output once or, after an abort, not at all.

``at_least_once``: an idempotent producer; the batch is flushed and every send confirmed
before the offsets are committed, so a crash can repeat output but never lose it.

In both modes offsets are never committed before the output is written.

A record the producer or the broker refuses for what it is (too large, invalid) fails
:meth:`Delivery.commit` (and the loop's sends) with :class:`OutputRejectedError`: sending it
again fails the same way, so the loop finds the input it came from and dead-letters it
instead of retrying. Every other failure is about the broker and worth retrying.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import (
    AuthorizationError,
    CorruptRecordError,
    InvalidProducerEpochError,
    InvalidTimestampError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    ProducerFencedError,
    RecordListTooLargeError,
    TransactionAbortedError,
    TransactionalIdAuthorizationFailedError,
    UnknownError,
    UnsupportedVersionError,
)
from kafka.errors import InvalidRecordError as BrokerInvalidRecordError
from kafka.producer.future import FutureRecordMetadata
from kafka.producer.transaction_manager import TransactionState
from kafka.structs import OffsetAndMetadata, TopicPartition

from lakecast.errors import StreamError
from lakecast.kafka.clients import DeliveryMode, check_mode

Offsets = Mapping[TopicPartition, OffsetAndMetadata]

# After these the producer cannot go on (another instance owns the transactional id, or the
# broker forbids it): the process must stop and be restarted, which is what KIP-447 intends.
FATAL_PRODUCER_ERRORS: tuple[type[BaseException], ...] = (
    ProducerFencedError,
    InvalidProducerEpochError,
    TransactionalIdAuthorizationFailedError,
    AuthorizationError,
    UnsupportedVersionError,
)


# Refused for the record itself, by the client before sending (a record over
# max_request_size) or by the broker (over the topic's max.message.bytes, failing the topic's
# validation: kafka-python splits a refused batch down to the record): the same record fails
# the same way every time.
TOO_LARGE_ERRORS: tuple[type[KafkaError], ...] = (MessageSizeTooLargeError, RecordListTooLargeError)
RECORD_ERRORS: tuple[type[KafkaError], ...] = (
    *TOO_LARGE_ERRORS,
    BrokerInvalidRecordError,
    CorruptRecordError,
    InvalidTimestampError,
)


class FatalDeliveryError(StreamError):
    """The producer is fenced or otherwise unusable; restart the process."""

    retriable = False


class OutputRejectedError(StreamError):
    """An output record cannot be produced, whatever the broker's state: too large, not
    serialisable, or refused by the broker for what it holds. ``too_large`` says which kind.

    Not worth retrying: the loop splits the batch to find the input it came from.
    """

    retriable = False

    def __init__(self, message: str, *, too_large: bool, by_broker: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large
        self.by_broker = by_broker  # refused in a produce response, not before sending


def rejected(exc: BaseException, *, by_broker: bool = False) -> OutputRejectedError:
    """The :class:`OutputRejectedError` for a record-level ``exc`` (see :data:`RECORD_ERRORS`)."""
    error = OutputRejectedError(
        f"output record refused: {exc!r}",
        too_large=isinstance(exc, TOO_LARGE_ERRORS),
        by_broker=by_broker,
    )
    error.__cause__ = exc
    return error


# kafka-python 3.0's flush() waits on the batches it listed when it began; a batch the broker
# refused as too large is split into new ones and never completes, and flush() raises
# UnknownError('Future not done') though nothing failed. Flushing again waits on the new ones;
# each split halves a batch, so 32 covers any batch.
_FLUSH_TRIES = 32


def flush(producer: KafkaProducer) -> None:
    """``producer.flush()``, riding out kafka-python's flush while a refused batch is split."""
    for _ in range(_FLUSH_TRIES - 1):
        try:
            producer.flush()
            return
        except UnknownError as exc:
            if "Future not done" not in str(exc):
                raise
    producer.flush()


def check_sent(futures: Iterable[FutureRecordMetadata]) -> None:
    """Raise for the sends that ``flush()`` has completed: an :class:`OutputRejectedError`
    if any record was refused for itself, else the first failure."""
    first: BaseException | None = None
    for future in futures:
        if not future.is_done:
            msg = "flush returned before a send completed"
            raise KafkaTimeoutError(msg)
        if future.failed():
            exc = future.exception
            if isinstance(exc, RECORD_ERRORS):
                raise rejected(exc, by_broker=True)
            # Its batch's other records fail with a plain KafkaError: keep looking.
            first = first or exc
    if first is not None:
        raise first


class Delivery(ABC):
    """One micro-batch at a time: ``begin``, the loop sends, then ``commit`` or ``abort``."""

    mode: DeliveryMode

    def __init__(self, producer: KafkaProducer, consumer: KafkaConsumer) -> None:
        self.producer = producer
        self.consumer = consumer

    @abstractmethod
    def start(self) -> None:
        """Prepare the producer once, before the first batch."""

    @abstractmethod
    def begin(self) -> None: ...

    @abstractmethod
    def commit(self, offsets: Offsets, sent: Iterable[FutureRecordMetadata]) -> None:
        """Make the batch's outputs and then its offsets durable."""

    @abstractmethod
    def abort(self) -> None:
        """Give up the batch's outputs (as far as the mode can)."""

    def recover(self) -> None:
        """Make the producer fit for the next batch after the broker refused a record."""
        return None


class ExactlyOnce(Delivery):
    mode: DeliveryMode = "exactly_once"

    def __init__(self, producer: KafkaProducer, consumer: KafkaConsumer) -> None:
        if not producer.config.get("transactional_id"):
            msg = "exactly_once delivery needs a producer built with a transactional_id"
            raise ValueError(msg)
        super().__init__(producer, consumer)
        self.in_transaction = False
        self._epoch: tuple[int, int] | None = None  # (producer id, epoch) at begin

    def start(self) -> None:
        try:
            self.producer.init_transactions()
        except FATAL_PRODUCER_ERRORS as exc:
            msg = f"init transactions: the producer cannot be used ({exc!r})"
            raise FatalDeliveryError(msg) from exc
        except KafkaError as exc:
            msg = f"init transactions: the transaction coordinator did not answer ({exc!r})"
            raise StreamError(msg) from exc

    def begin(self) -> None:
        self.producer.begin_transaction()
        self.in_transaction = True
        self._epoch = _producer_epoch(self.producer)

    def commit(self, offsets: Offsets, sent: Iterable[FutureRecordMetadata]) -> None:
        flush(self.producer)
        check_sent(sent)
        if offsets:
            self.producer.send_offsets_to_transaction(dict(offsets), self.consumer.group_metadata())
        self.producer.commit_transaction()
        self.in_transaction = False

    def abort(self) -> None:
        if not self.in_transaction:
            return
        try:
            if not _ended_by_epoch_bump(self.producer, self._epoch):
                self.producer.abort_transaction()
        except KafkaError as exc:
            msg = f"abort transaction: the producer cannot go on ({exc!r})"
            raise FatalDeliveryError(msg) from exc
        finally:
            self.in_transaction = False

    def recover(self) -> None:
        # kafka-python splits a batch the broker refused as too large and rolls the partition's
        # sequence back to the batch's; the aborted transaction leaves that counter behind, and
        # the next transaction's first send fails OUT_OF_ORDER_SEQUENCE_NUMBER (seen: every
        # retry of the batch failed so). A producer epoch bump (KIP-360) restarts every
        # partition's sequence. kafka-python runs the bump itself only after such a failure.
        manager = getattr(self.producer, "_transaction_manager", None)
        if manager is None:
            return
        manager.bump_producer_id_and_epoch()
        self.producer._sender.wakeup()
        _await_epoch_bump(self.producer)


def _await_epoch_bump(producer: KafkaProducer) -> None:
    manager = producer._transaction_manager
    deadline = time.monotonic() + producer.config["request_timeout_ms"] / 1000
    while manager.is_bumping_epoch():
        if time.monotonic() > deadline:
            msg = "the producer epoch bump did not complete"
            raise KafkaTimeoutError(msg)
        time.sleep(0.005)


def _producer_epoch(producer: KafkaProducer) -> tuple[int, int] | None:
    manager = getattr(producer, "_transaction_manager", None)
    if manager is None:
        return None
    current = manager.producer_id_and_epoch
    return (current.producer_id, current.epoch)


def _ended_by_epoch_bump(producer: KafkaProducer, began_at: tuple[int, int] | None) -> bool:
    """Whether the open transaction was ended by a producer epoch bump (waiting for one).

    kafka-python 3.0 bumps the epoch (KIP-360) after a sequence error, which follows its
    splitting of a batch the broker refused as too large. The broker aborts the open
    transaction as part of the bump, and ``abort_transaction()`` during or after it is an
    invalid transition that would end the producer. kafka-python has no public view of this.

    Raises:
        FatalDeliveryError: the transaction ended with no bump: it was committed after all
            (kafka-python finished a commit that had raised, e.g. across a broker restart).
            Its outputs and offsets are durable; redoing the batch would double it, so the
            process restarts and reads on from the committed offsets.
    """
    manager = getattr(producer, "_transaction_manager", None)
    if manager is None:
        return False
    _await_epoch_bump(producer)
    if manager._current_state != TransactionState.READY:
        return False
    if began_at is not None and _producer_epoch(producer) == began_at:
        msg = (
            "the batch's transaction was committed after its commit raised (no epoch bump "
            "ended it); restart to read on from the committed offsets instead of doubling it"
        )
        raise FatalDeliveryError(msg)
    # What the aborted transaction left unsent must not go out under the new epoch.
    producer._accumulator.abort_undrained_batches(TransactionAbortedError())
    return True


class AtLeastOnce(Delivery):
    mode: DeliveryMode = "at_least_once"

    def start(self) -> None:
        return None

    def begin(self) -> None:
        return None

    def commit(self, offsets: Offsets, sent: Iterable[FutureRecordMetadata]) -> None:
        flush(self.producer)
        check_sent(sent)
        if offsets:
            self.consumer.commit(dict(offsets))

    def abort(self) -> None:
        # Outputs already sent stay; the loop seeks back, so they are repeated, not lost.
        return None

    def recover(self) -> None:
        # kafka-python 3.0 takes a record the broker refused (over the topic's
        # max.message.bytes) for a fatal error of the idempotent producer, and fails every
        # later send with it (seen: the dead letter of the next, small, record failed so, and
        # the worker exited). Java fails only that batch. A new producer id starts the
        # idempotent session afresh, sequences included: at least once, a record may be
        # sent twice, never lost.
        manager = getattr(self.producer, "_transaction_manager", None)
        if manager is None or not manager.has_fatal_error():
            return
        with manager._lock:  # kafka-python has no public way out of FATAL_ERROR
            manager._current_state = TransactionState.UNINITIALIZED
            manager._last_error = None
        manager.reset_producer_id()
        self.producer._sender.wakeup()


def make_delivery(mode: str, producer: KafkaProducer, consumer: KafkaConsumer) -> Delivery:
    checked = check_mode(mode)
    if checked == "exactly_once":
        return ExactlyOnce(producer, consumer)
    return AtLeastOnce(producer, consumer)
