"""The inference worker in a thread, for integration tests against the session broker.

:class:`ThreadedWorker` runs :meth:`InferenceWorker.run` (the same ``run`` a worker process
runs) on a registry and an ``entity_features`` table, and stops it the way SIGTERM stops a
process; :func:`drain` waits until the group committed every input offset.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from lakecast.config import DriftSettings, KafkaSettings, ServingSettings, TopicNames
from lakecast.registry import Registry
from lakecast.serving.model_source import ModelSource, SnapshotSource, Wrap
from lakecast.serving.routing import RoutingSource
from lakecast.serving.worker import InferenceWorker
from lakecast.serving.worker_config import WorkerConfig
from lakecast.testing.clock import wait_for
from lakecast.testing.kafka import committed_total
from lakecast.testing.models import served_lake as serve_lake

TIMEOUT_S = 60.0
MAX_RECORD_BYTES = 64_000  # below the broker's own limit, so an oversized record can be sent


class Lake:
    """A served lake's paths: the registry and the entity snapshot."""

    def __init__(self, root: Path) -> None:
        self.registry = str(root / "registry")
        self.snapshot = str(root / "entity_features")


def served_lake(root: Path) -> Lake:
    """A registry with ``purchase@champion`` (1.0.0) and an entity snapshot under ``root``."""
    serve_lake(root)
    return Lake(root)


class ServedLake(Protocol):
    """Where a worker reads its models and its entity snapshot."""

    @property
    def registry(self) -> str: ...

    @property
    def snapshot(self) -> str: ...


def worker_topics(topic_factory: Callable[..., str], partitions: int = 2) -> dict[str, str]:
    """Fresh events, predictions, dead-letter and metrics topics for one test."""
    return {
        "events": topic_factory("events", partitions),
        "predictions": topic_factory("predictions", partitions),
        "dlq": topic_factory("dlq"),
        "metrics": topic_factory("metrics"),
    }


class ThreadedWorker:
    """An InferenceWorker serving in a thread, stopped the way SIGTERM stops a process."""

    def __init__(
        self,
        bootstrap: str,
        lake: ServedLake,
        topics: dict[str, str],
        group: str,
        *,
        reference: str = "purchase@champion",
        wrap: Wrap | None = None,
        poll_s: float = 0.5,
        routing: RoutingSource | None = None,
        max_record_bytes: int = MAX_RECORD_BYTES,
        drift: DriftSettings | None = None,
    ) -> None:
        config = WorkerConfig(
            topics=TopicNames(**topics),
            serving=ServingSettings(
                group_id=group,
                max_batch=200,
                max_wait_ms=50,
                max_record_bytes=max_record_bytes,
                sample_interval_s=0.5,
            ),
            source_id=f"test-{group}",
            drift=drift or DriftSettings(),
        )
        models = ModelSource(Registry(lake.registry), reference, poll_s=poll_s, wrap=wrap)
        self.worker = InferenceWorker(config, models, SnapshotSource(lake.snapshot), routing)
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        kafka = KafkaSettings(bootstrap_servers=bootstrap)

        def run() -> None:
            try:
                self.worker.run(kafka, self.stop_event)
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(TIMEOUT_S)
        assert not self.thread.is_alive(), "the worker did not stop"
        if self.error is not None:
            raise self.error


def drain(
    bootstrap: str,
    group: str,
    topic: str,
    total: int,
    worker: ThreadedWorker,
    *,
    timeout_s: float = TIMEOUT_S,
) -> None:
    """Wait until ``group`` committed ``total`` offsets of ``topic``; raise the worker's error."""

    def done() -> bool:
        if worker.error is not None:
            raise worker.error
        return committed_total(bootstrap, group, topic) >= total

    wait_for(done, timeout_s=timeout_s, what=f"group {group} to commit {total} offsets")
