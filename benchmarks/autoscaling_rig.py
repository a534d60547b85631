"""The real-worker rig of the autoscaling benchmarks: a broker, a served model, worker processes.

What :mod:`autoscaling` (the trace under each policy) and :mod:`autoscaling_measure` (the
simulator's figures) share: a local broker on free ports (or a given cluster), a registered
model and an entity-feature snapshot, fresh topics per run, a pool of real inference worker
processes (``lakecast stream worker``) and a counter of the live ones.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psutil

from lakecast.autoscaling.pool import WorkerPool
from lakecast.config import KafkaSettings
from lakecast.data.replay import replay
from lakecast.demo.fleet import DemoTopics
from lakecast.kafka.clients import TopicSpec, build_admin, build_producer, ensure_topics
from lakecast.serving.worker_config import worker_command
from lakecast.testing.brokers import broker_or_temporary
from lakecast.testing.clock import wait_for
from lakecast.testing.events import event_payload
from lakecast.testing.features import write_snapshot
from lakecast.testing.kafka import committed_total, read_committed
from lakecast.testing.models import register_model

WARMUP_EVENTS = 60
SAMPLE_INTERVAL_S = 2


def broker(bootstrap: str | None) -> AbstractContextManager[str]:
    """The given cluster, or a LocalBroker on free ports in a temporary folder."""
    return broker_or_temporary(bootstrap, heap="1g")


@dataclass(frozen=True)
class Bench:
    """What every run shares: the broker, the served model, the worker logs."""

    bootstrap: str
    registry: str
    snapshot: str
    log_dir: Path
    partitions: int

    @property
    def kafka(self) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=self.bootstrap)

    def topics(self) -> DemoTopics:
        topics = DemoTopics(run=f"as-{uuid.uuid4().hex[:6]}")
        admin = build_admin(self.kafka)
        try:
            ensure_topics(
                admin,
                [
                    TopicSpec(topics.events, self.partitions),
                    TopicSpec(topics.predictions, self.partitions),
                    TopicSpec(topics.dlq, 1),
                    TopicSpec(topics.metrics, 1),
                ],
            )
        finally:
            admin.close()
        return topics

    def pool(self, topics: DemoTopics) -> WorkerPool:
        options = topics.worker_options().model_copy(
            update={
                "registry": self.registry,
                "entity_features": self.snapshot,
                "model": "purchase@champion",
                "sample_interval_s": SAMPLE_INTERVAL_S,
            }
        )
        command = worker_command(options, metrics_port=0)
        return WorkerPool(
            command,
            name=f"worker-{topics.run}",
            env={"LAKECAST__KAFKA__BOOTSTRAP_SERVERS": self.bootstrap},
            stop_timeout_s=20.0,
            log_dir=self.log_dir,
        )

    def committed(self, topics: DemoTopics) -> int:
        return committed_total(self.bootstrap, topics.group, topics.events)


def live_workers(topics: DemoTopics) -> int:
    """Worker processes of this run alive now (from the process table, as a host would count)."""
    count = 0
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and topics.events in child.cmdline():
                count += 1
        except psutil.Error:  # it exited while we looked
            continue
    return count


@dataclass
class WorkerCounter:
    """Counts the live workers once a second in a thread; integrates them over a window."""

    topics: DemoTopics
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        def run() -> None:
            while True:
                self.samples.append((time.monotonic(), live_workers(self.topics)))
                if self._stop.wait(1.0):
                    return

        self._thread = threading.Thread(target=run, name="worker-counter", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def worker_seconds(self, start: float, end: float) -> float:
        """Step integral: each count holds until the next one."""
        total = 0.0
        points = [*self.samples, (math.inf, 0)]
        for (t, n), (t_next, _) in itertools.pairwise(points):
            low, high = max(t, start), min(t_next, end)
            if high > low:
                total += n * (high - low)
        return total

    def peak(self, start: float, end: float) -> int:
        return max((n for t, n in self.samples if start <= t <= end), default=0)


def wait_ready(bench: Bench, topics: DemoTopics, workers: int, timeout_s: float = 120) -> None:
    """Until ``workers`` have sent a sample and a few warm-up events were served."""

    def sampled() -> bool:
        records = read_committed(bench.bootstrap, topics.metrics, at_least=0, quiet_s=0.3)
        sources = {
            value.get("source")
            for value in (orjson.loads(r.value) for r in records if r.value)
            if value.get("kind") == "sample"
        }
        return len(sources) >= workers

    wait_for(sampled, timeout_s=timeout_s, what=f"samples from {workers} worker(s)", every_s=1)
    producer = build_producer(bench.kafka, mode="at_least_once", client_id="bench-warmup")
    try:
        replay(producer, topics.events, (event_payload(i) for i in range(WARMUP_EVENTS)))
    finally:
        producer.close()
    wait_for(
        lambda: bench.committed(topics) >= WARMUP_EVENTS,
        timeout_s=timeout_s,
        what="the warm-up events to be served",
        every_s=0.5,
    )


def one_worker_rate(bench: Bench, events: int) -> float:
    """Events/s one worker serves from a backlog (first commit to last, join excluded)."""
    topics = bench.topics()
    producer = build_producer(bench.kafka, mode="at_least_once", client_id="bench-calibrate")
    try:
        replay(producer, topics.events, (event_payload(i) for i in range(events)))
    finally:
        producer.close()
    pool = bench.pool(topics)
    pool.scale_to(1)
    try:
        wait_for(lambda: bench.committed(topics) > 0, timeout_s=120, what="the first commit")
        first, began = bench.committed(topics), time.monotonic()
        wait_for(
            lambda: bench.committed(topics) >= events,
            timeout_s=300,
            what=f"one worker to serve {events:,} events",
            every_s=0.1,
        )
        return (events - first) / (time.monotonic() - began)
    finally:
        pool.stop_all()


def served_model(root: Path) -> tuple[str, str]:
    registry, snapshot = str(root / "registry"), str(root / "entity_features")
    register_model(registry)
    write_snapshot(snapshot)
    return registry, snapshot


def show_worker_logs(log_dir: Path, out: Callable[[str], None], lines: int = 15) -> None:
    """The end of each worker's log (they are removed with the temporary folder)."""
    for log in sorted(log_dir.glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        out(f"--- {log.name} (last {len(tail)} lines)")
        for line in tail:
            out(f"    {line}")
