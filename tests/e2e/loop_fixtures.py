"""Helpers for e2e tests that run the streaming services against real worker processes.

The services (monitor, autoscaler) run in threads of the test; :class:`MetricsTail` reads the
metrics topic as they and the workers write it; :class:`Traffic` produces events at a rate
the test changes; the worker processes are looked up in the process table, as a host would
count them, since their pool belongs to the autoscaler's thread.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import psutil
import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition

from lakecast.errors import InvalidRecordError
from lakecast.kafka.serde import decode_metric
from lakecast.kafka.timestamps import to_epoch
from lakecast.testing.events import event_payload


class Service(Protocol):
    def run(self, stop: threading.Event) -> object: ...


@contextlib.contextmanager
def running(service: Service, name: str) -> Iterator[threading.Thread]:
    """``service.run`` in a thread until the block ends; an error it raised is raised here."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            service.run(stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(timeout=120)
    assert not thread.is_alive(), f"the {name} did not stop on its stop event"
    if errors:
        raise errors[0]


class MetricsTail:
    """Every record of the (one-partition) metrics topic, read as it is written."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
        )
        partition = TopicPartition(topic, 0)
        self._consumer.assign([partition])
        self._consumer.seek_to_beginning(partition)
        self._records: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-tail", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for batch in self._consumer.poll(timeout_ms=200).values():
                for message in batch:
                    try:
                        record = decode_metric(message.value)
                    except InvalidRecordError:
                        continue
                    record["epoch"] = to_epoch(record["ts"])
                    with self._lock:
                        self._records.append(record)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close()

    def of(
        self, kind: str, *, source: str | None = None, after: float = 0.0
    ) -> list[dict[str, Any]]:
        """The records of ``kind`` ("": any) from ``source`` stamped after ``after``, by ts."""
        with self._lock:
            records = list(self._records)
        return sorted(
            (
                r
                for r in records
                if kind in ("", r["kind"])
                and r["epoch"] > after
                and (source is None or r["source"] == source)
            ),
            key=lambda r: r["epoch"],
        )


class Traffic:
    """Events ``e-<first_id>``, ``e-<first_id + 1>`` ... at ``rate`` per second from a thread,
    paced by a schedule; a rate of 0 pauses it."""

    def __init__(self, bootstrap: str, topic: str, *, first_id: int = 0) -> None:
        self._producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        self._topic = topic
        self.first_id = first_id
        self._rate = 0.0
        self._lock = threading.Lock()
        self.sent = 0
        self.failed: list[int] = []  # the sends the broker never acknowledged
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self._thread.start()

    def set_rate(self, rate: float) -> float:
        """Change the rate from now on; returns the epoch time of the change."""
        with self._lock:
            self._rate = rate
        return time.time()

    def _run(self) -> None:
        due = 0.0
        last = time.monotonic()
        while not self._stop.wait(0.01):
            now = time.monotonic()
            with self._lock:
                due += (now - last) * self._rate
            last = now
            while self.sent < int(due):
                index = self.first_id + self.sent
                key, value = event_payload(index)
                future = self._producer.send(self._topic, key=key, value=value)
                future.add_errback(lambda _, index=index: self.failed.append(index))
                self.sent += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._producer.flush(timeout=30)
        self._producer.close()

    def event_ids(self) -> list[str]:
        return [f"e-{self.first_id + i}" for i in range(self.sent)]


def read_to_end(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[Any]:
    """Every committed record of ``topic`` up to its end now (no count known in advance)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        max_poll_records=5_000,
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)  # the last stable offsets, read_committed
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            assert time.monotonic() < deadline, f"{topic} not read to its end in {timeout_s} s"
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def worker_processes(events_topic: str) -> dict[str, int]:
    """Worker id -> pid of the live worker processes serving ``events_topic``, from the process
    table (the pool belongs to the autoscaler's thread; the test only looks)."""
    workers = {}
    for child in psutil.Process().children(recursive=True):
        try:
            command = child.cmdline()
            if child.status() == psutil.STATUS_ZOMBIE or events_topic not in command:
                continue
        except psutil.Error:  # it exited while we looked
            continue
        workers[command[command.index("--source-id") + 1]] = child.pid
    return workers


def wait_until(
    condition: Callable[[], bool],
    what: str,
    diagnose: Callable[[], str],
    timeout_s: float = 90.0,
) -> None:
    """Poll ``condition``; on timeout fail with ``what`` and what ``diagnose`` says.

    The default deadline is generous: a loaded 2-core machine takes half a minute to start
    three worker interpreters.
    """
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}\n{diagnose()}")
        time.sleep(0.25)


def wait_while_progressing(
    count: Callable[[], int], target: int, idle_s: float = 20.0, timeout_s: float = 90.0
) -> int:
    """Poll ``count`` until it reaches ``target``, stops growing for ``idle_s`` or time is up."""
    deadline = time.monotonic() + timeout_s
    last, since = count(), time.monotonic()
    while last < target and time.monotonic() < deadline and time.monotonic() - since < idle_s:
        time.sleep(0.5)
        now = count()
        if now != last:
            last, since = now, time.monotonic()
    return last
