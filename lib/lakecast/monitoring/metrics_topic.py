"""The one consume loop of the services that read the ``metrics`` topic: monitor and autoscaler.

:class:`MetricsTopicService` builds the clients, subscribes once the topic is known, and until
its stop event is set polls, hands each message to the service, lets it write what the poll
implies, then commits what it read (a commit the group refuses is not fatal: at least once).
On stop it flushes and closes. A record that breaks the contract is logged with its topic,
partition and offset, counted and skipped (:func:`read_metric_record`, :func:`report_bad_record`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    KafkaError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)

from lakecast.config import KafkaSettings
from lakecast.errors import InvalidRecordError, StreamError
from lakecast.kafka.clients import await_topics, build_consumer, build_producer
from lakecast.kafka.serde import decode_metric, encode_key, encode_metric
from lakecast.monitoring.prometheus import BAD_RECORDS, METRICS_RECORDS

log = logging.getLogger(__name__)

# A commit refused because the group moved on: the next poll rejoins (not retriable as such).
GROUP_MOVED_ERRORS = (
    CommitFailedError,
    RebalanceInProgressError,
    IllegalGenerationError,
    UnknownMemberIdError,
)


@dataclass
class ServiceStats:
    """What a metrics-topic service has read so far (tests and logs read it)."""

    records: int = 0
    samples: int = 0
    bad_records: int = 0
    written: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


def subscribe_when_ready(consumer: KafkaConsumer, topic: str, timeout_s: float = 30.0) -> None:
    """Subscribe once the consumer's metadata knows ``topic`` (see :func:`await_topics`).

    Raises:
        StreamError: the topic has no partitions after ``timeout_s`` (it does not exist).
    """
    if not await_topics(consumer, [topic], timeout_s):
        msg = f"subscribe to {topic!r}: the topic has no partitions after {timeout_s:g} s"
        raise StreamError(msg)
    consumer.subscribe([topic])


def commit_read(consumer: KafkaConsumer, service: str) -> bool:
    """Commit what a metrics-topic service has read; a commit the group refuses is not fatal.

    A commit meets a rebalance (``RebalanceInProgressError``, ``CommitFailedError``: a fresh
    broker, a member joining) or a coordinator moving: the next ``poll`` rejoins, and the
    records since the last commit are read again (at least once, as these services are).
    Seen: a monitor on a fresh broker exited about a second after starting on its first commit.
    """
    try:
        consumer.commit()
    except KafkaError as exc:
        if not (isinstance(exc, GROUP_MOVED_ERRORS) or exc.retriable):
            raise
        log.warning("%s: commit refused, reading on (%r)", service, exc)
        return False
    return True


def read_metric_record(
    message: ConsumerRecord, service: str, stats: ServiceStats
) -> dict[str, Any] | None:
    """Decode a metrics-topic message; a bad one is logged with its offset, counted, None."""
    stats.records += 1
    try:
        record = decode_metric(message.value)
    except InvalidRecordError as exc:
        report_bad_record(message, service, stats, exc)
        return None
    kind = str(record["kind"])
    stats.by_kind[kind] = stats.by_kind.get(kind, 0) + 1
    METRICS_RECORDS.labels(service=service, kind=kind).inc()
    return record


def report_bad_record(
    message: ConsumerRecord, service: str, stats: ServiceStats, error: Exception
) -> None:
    """Log (JSON, with topic, partition, offset and field) and count a skipped record."""
    stats.bad_records += 1
    BAD_RECORDS.labels(service=service).inc()
    log.error(
        "skipped bad record at %s[%d]@%d: %s",
        message.topic,
        message.partition,
        message.offset,
        error,
        extra={
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "field": getattr(error, "field", None),
            "error": str(error),
        },
    )


def send_metric_record(
    producer: KafkaProducer, topic: str, kind: str, record: Mapping[str, Any]
) -> None:
    """Send a record built as a dict (``source``, ISO ``ts`` and its fields), keyed by source."""
    fields = {k: v for k, v in record.items() if k not in {"kind", "source", "ts"}}
    ts = datetime.fromisoformat(record["ts"]).astimezone(UTC)
    value = encode_metric(kind, record["source"], ts, fields)
    producer.send(topic, key=encode_key(record["source"]), value=value)


class MetricsTopicService:
    """A service on the ``metrics`` topic; subclasses say what a message and a poll do.

    Args:
        kafka: bootstrap and security (topics are explicit).
        topic: the metrics topic, read and written.
        group_id: the service's consumer group (offsets committed after each poll).
        client_id: the Kafka client id of its consumer and producer.
        from_beginning: with no committed offset, start at the earliest record (else latest).
        poll_timeout_ms: how long one poll waits; also how often the stop event is checked.
    """

    name = "metrics-service"

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        *,
        group_id: str,
        client_id: str,
        from_beginning: bool,
        poll_timeout_ms: int,
    ) -> None:
        self.kafka = kafka
        self.topic = topic
        self.group_id = group_id
        self.client_id = client_id
        self.from_beginning = from_beginning
        self.poll_timeout_ms = poll_timeout_ms
        self.stats = ServiceStats()
        # The subclass's own logger, so that its lines keep their logger name.
        self.log = logging.getLogger(type(self).__module__)

    def run(self, stop: threading.Event) -> ServiceStats:
        """Consume until ``stop`` is set; then stop the service, flush and close the clients."""
        consumer = build_consumer(
            self.kafka,
            group_id=self.group_id,
            client_id=self.client_id,
            auto_offset_reset="earliest" if self.from_beginning else "latest",
        )
        producer = build_producer(self.kafka, mode="at_least_once", client_id=self.client_id)
        try:
            subscribe_when_ready(consumer, self.topic)
            self.on_start()
        except StreamError:
            consumer.close()
            producer.close()
            self.on_closed()
            raise
        try:
            while not stop.is_set():
                batches = consumer.poll(timeout_ms=self.poll_wait_ms())
                for messages in batches.values():
                    for message in messages:
                        self.on_message(message)
                self.before_commit(producer)
                if batches:
                    commit_read(consumer, self.name)
                self.after_commit(producer)
        finally:
            try:
                self.on_stop()
            finally:
                producer.flush(timeout=10)
                producer.close(timeout=10)
                consumer.close()
                self.on_closed()
                self.log.info("%s stopped", self.name, extra={"stats": vars(self.stats)})
        return self.stats

    def poll_wait_ms(self) -> int:
        """How long the next poll may wait."""
        return self.poll_timeout_ms

    def on_start(self) -> None:
        """Once subscribed, before the first poll; a StreamError from it closes the clients
        (and calls :meth:`on_closed`) and ends :meth:`run`."""

    def on_message(self, message: ConsumerRecord) -> None:
        """One message of the topic (bad ones are skipped and counted, never raised)."""

    def before_commit(self, producer: KafkaProducer) -> None:
        """After each poll, before its records are committed: write what they imply."""

    def after_commit(self, producer: KafkaProducer) -> None:
        """After each poll and its commit: work on the service's own clock."""

    def on_stop(self) -> None:
        """When the loop ends, before the clients close."""

    def on_closed(self) -> None:
        """Last, after the clients closed: release what :meth:`on_start` opened."""
