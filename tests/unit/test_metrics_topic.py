"""The metrics-topic service loop (monitor and autoscaler): order of its steps, commits, stops.

The Kafka clients are stand-ins (the real loop runs against a broker in
tests/integration/test_monitor_service.py and test_autoscaler_service.py); what is under test
here is the loop: when it hands messages over, commits, and closes.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kafka.errors import RebalanceInProgressError

from lakecast.config import KafkaSettings
from lakecast.errors import StreamError
from lakecast.monitoring import metrics_topic
from lakecast.monitoring.metrics_topic import MetricsTopicService

pytestmark = pytest.mark.unit


class _Consumer:
    def __init__(self, polls: list[dict[str, list[str]]], events: list[str], stop: threading.Event):
        self.polls = polls
        self.events = events
        self.stop = stop
        self.commit_error: Exception | None = None

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def subscribe(self, topics: list[str]) -> None:
        self.events.append(f"subscribe {topics[0]}")

    def poll(self, timeout_ms: int) -> dict[str, list[str]]:
        self.events.append(f"poll {timeout_ms}")
        if len(self.polls) <= 1:
            self.stop.set()
        return self.polls.pop(0) if self.polls else {}

    def commit(self) -> None:
        self.events.append("commit")
        if self.commit_error is not None:
            error, self.commit_error = self.commit_error, None
            raise error

    def close(self) -> None:
        self.events.append("consumer closed")


class _Producer:
    def __init__(self, events: list[str]) -> None:
        self.events = events

    def flush(self, timeout: float | None = None) -> None:
        self.events.append("flush")

    def close(self, timeout: float | None = None) -> None:
        self.events.append("producer closed")


class _Recording(MetricsTopicService):
    name = "recording"

    def __init__(self, events: list[str], fail_start: bool = False) -> None:
        super().__init__(
            KafkaSettings(),
            "metrics",
            group_id="g",
            client_id="c",
            from_beginning=True,
            poll_timeout_ms=7,
        )
        self.events = events
        self.fail_start = fail_start

    def on_start(self) -> None:
        self.events.append("start")
        if self.fail_start:
            msg = "probe: no partitions"
            raise StreamError(msg)

    def on_message(self, message: Any) -> None:
        self.events.append(f"message {message}")

    def before_commit(self, producer: Any) -> None:
        self.events.append("before commit")

    def after_commit(self, producer: Any) -> None:
        self.events.append("after commit")

    def on_stop(self) -> None:
        self.events.append("stop")

    def on_closed(self) -> None:
        self.events.append("closed")


def _wire(
    monkeypatch: pytest.MonkeyPatch, polls: list[dict[str, list[str]]]
) -> tuple[list[str], threading.Event, _Consumer]:
    events: list[str] = []
    stop = threading.Event()
    consumer = _Consumer(polls, events, stop)
    monkeypatch.setattr(metrics_topic, "build_consumer", lambda *a, **k: consumer)
    monkeypatch.setattr(metrics_topic, "build_producer", lambda *a, **k: _Producer(events))
    return events, stop, consumer


def test_the_loop_writes_before_it_commits_and_commits_only_what_it_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events, stop, consumer = _wire(monkeypatch, [{"p0": ["a", "b"]}, {}])
    consumer.commit_error = RebalanceInProgressError()  # refused once: the loop reads on
    service = _Recording(events)
    service.run(stop)
    assert events == [
        "subscribe metrics",
        "start",
        "poll 7",
        "message a",
        "message b",
        "before commit",
        "commit",
        "after commit",
        "poll 7",  # nothing read: nothing committed
        "before commit",
        "after commit",
        "stop",
        "flush",
        "producer closed",
        "consumer closed",
        "closed",
    ]


def test_a_stream_error_at_start_closes_the_clients_and_is_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events, stop, _ = _wire(monkeypatch, [])
    with pytest.raises(StreamError, match="no partitions"):
        _Recording(events, fail_start=True).run(stop)
    assert events == ["subscribe metrics", "start", "consumer closed", "producer closed", "closed"]
