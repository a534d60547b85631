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
    TransactionalIdAuthorizationFailedError,
    UnsupportedVersionError,
)
from kafka.errors import InvalidRecordError as BrokerInvalidRecordError
from kafka.producer.future import FutureRecordMetadata
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

    def __init__(self, message: str, *, too_large: bool) -> None:
        super().__init__(message)
        self.too_large = too_large


def rejected(exc: BaseException, what: str = "output record") -> OutputRejectedError:
    """The :class:`OutputRejectedError` for a record-level ``exc`` (see :data:`RECORD_ERRORS`)."""
    error = OutputRejectedError(
        f"{what} refused: {exc!r}", too_large=isinstance(exc, TOO_LARGE_ERRORS)
    )
    error.__cause__ = exc
    return error


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
                raise rejected(exc)
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


class ExactlyOnce(Delivery):
    mode: DeliveryMode = "exactly_once"

    def __init__(self, producer: KafkaProducer, consumer: KafkaConsumer) -> None:
        if not producer.config.get("transactional_id"):
            msg = "exactly_once delivery needs a producer built with a transactional_id"
            raise ValueError(msg)
        super().__init__(producer, consumer)
        self.in_transaction = False

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

    def commit(self, offsets: Offsets, sent: Iterable[FutureRecordMetadata]) -> None:
        self.producer.flush()
        check_sent(sent)
        if offsets:
            self.producer.send_offsets_to_transaction(dict(offsets), self.consumer.group_metadata())
        self.producer.commit_transaction()
        self.in_transaction = False

    def abort(self) -> None:
        if not self.in_transaction:
            return
        try:
            self.producer.abort_transaction()
        except KafkaError as exc:
            msg = f"abort transaction: the producer cannot go on ({exc!r})"
            raise FatalDeliveryError(msg) from exc
        finally:
            self.in_transaction = False


class AtLeastOnce(Delivery):
    mode: DeliveryMode = "at_least_once"

    def start(self) -> None:
        return None

    def begin(self) -> None:
        return None

    def commit(self, offsets: Offsets, sent: Iterable[FutureRecordMetadata]) -> None:
        self.producer.flush()
        check_sent(sent)
        if offsets:
            self.consumer.commit(dict(offsets))

    def abort(self) -> None:
        # Outputs already sent stay; the loop seeks back, so they are repeated, not lost.
        return None


def make_delivery(mode: str, producer: KafkaProducer, consumer: KafkaConsumer) -> Delivery:
    checked = check_mode(mode)
    if checked == "exactly_once":
        return ExactlyOnce(producer, consumer)
    return AtLeastOnce(producer, consumer)
