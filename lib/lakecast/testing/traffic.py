"""Traffic for fault trials: a paced load of synthetic events in, committed outputs watched.

:class:`PacedLoad` produces events ``e-0, e-1, ...`` at a steady rate and notes when each was
sent; :class:`OutputWatch` reads ``predictions`` and the DLQ as a ``read_committed`` reader
and notes when each output came, which is what a trial's stall and latency are measured on.
"""

from __future__ import annotations

import base64
import threading
import time

import orjson
from kafka.partitioner.default import murmur2
from kafka.structs import TopicPartition

from lakecast.config import KafkaSettings
from lakecast.kafka.clients import build_consumer, build_producer
from lakecast.testing.events import event_payload

_TICK_S = 0.01


def input_partition(key: bytes, partitions: int) -> int:
    """The partition a keyed record lands on: murmur2 as Kafka's default partitioner."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class PacedLoad(threading.Thread):
    """Produces synthetic events ``e-0, e-1, ...`` at ``rate`` a second until stopped.

    Idempotent producer (the configured clients): a broker restart does not double an input.
    """

    def __init__(self, bootstrap: str, topic: str, rate: int) -> None:
        super().__init__(name="paced-load", daemon=True)
        self.settings = KafkaSettings(bootstrap_servers=bootstrap)
        self.topic = topic
        self.rate = rate
        self.sent_at: list[float] = []  # monotonic send time of event i
        self._halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        producer = build_producer(self.settings, mode="at_least_once", client_id="fault-load")
        try:
            began = time.monotonic()
            while not self._halt.is_set():
                due = int((time.monotonic() - began) * self.rate)
                for i in range(len(self.sent_at), due):
                    key, value = event_payload(i)
                    producer.send(self.topic, key=key, value=value)
                    self.sent_at.append(time.monotonic())
                self._halt.wait(_TICK_S)
            producer.flush()
        except BaseException as exc:  # reported by stop(), not lost in a thread
            self.error = exc
        finally:
            producer.close()

    def stop(self) -> int:
        """Stop producing, wait until every event is written; how many were sent."""
        self._halt.set()
        self.join()
        if self.error is not None:
            raise self.error
        return len(self.sent_at)


class OutputWatch(threading.Thread):
    """Reads ``predictions`` and the DLQ (``read_committed``), noting when each record came."""

    def __init__(self, bootstrap: str, predictions: str, dlq: str) -> None:
        super().__init__(name="output-watch", daemon=True)
        self.bootstrap = bootstrap
        self.topics = (predictions, dlq)
        self.arrivals: list[tuple[float, str]] = []  # (monotonic, event id)
        self._halt = threading.Event()

    def run(self) -> None:
        consumer = build_consumer(
            KafkaSettings(bootstrap_servers=self.bootstrap),
            group_id=None,
            client_id="output-watch",
            max_poll_records=5_000,
            fetch_max_wait_ms=50,
        )
        try:
            parts = [
                TopicPartition(topic, p)
                for topic in self.topics
                for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
            while not self._halt.is_set():
                polled = consumer.poll(timeout_ms=50)
                now = time.monotonic()
                for tp, records in polled.items():
                    for record in records:
                        self.arrivals.append(
                            (now, event_id_of(tp.topic, record.value, self.topics))
                        )
        finally:
            consumer.close()

    def count(self) -> int:
        return len(self.arrivals)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def event_id_of(topic: str, value: bytes, topics: tuple[str, str]) -> str:
    document = orjson.loads(value)
    if topic == topics[0]:
        return str(document["event_id"])
    return str(orjson.loads(base64.b64decode(document["payload_b64"]))["event_id"])
