"""The pipes of benchmarks/streaming.py: each drains one pre-filled topic into its own output,
raw kafka-python (the ceiling), the lakecast loop, and the inference worker.

To add a pipe, write ``def pipe(ctx: PipeContext) -> int`` that drains ``ctx.source`` into
``ctx.sink`` and returns the events it consumed, and append it to ``PIPES``.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import orjson
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import OffsetAndMetadata, TopicPartition

from lakecast.config import KafkaSettings, LoopSettings, ServingSettings, TopicNames
from lakecast.kafka.batch import BatchReport, BatchResult, OutputRecord
from lakecast.kafka.clients import (
    BATCH_BYTES,
    build_consumer,
    build_producer,
    transactional_id_for,
)
from lakecast.kafka.loop import run_loop
from lakecast.testing.brokers import broker_or_temporary

MAX_POLL = 500
WORKER_PIPE = "inference worker, exactly-once, sklearn"


@dataclass
class PipeContext:
    bootstrap: str
    source: str
    sink: str
    events: int
    group: str
    max_batch: int = MAX_POLL  # lakecast's micro-batch limit (the raw pipes poll MAX_POLL)
    started: float = 0.0  # set by a pipe when its first record arrives (group join excluded)
    finished: float = 0.0  # set when the last event's output and offset are durable


Pipe = Callable[[PipeContext], int]


def broker(bootstrap: str | None) -> AbstractContextManager[str]:
    """The given cluster, or a LocalBroker on free ports in a temporary folder."""
    return broker_or_temporary(bootstrap, heap="1g")


def key(i: int) -> bytes:
    return f"u-{i % 5_000}".encode()


def event(i: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"e-{i}",
            "user_id": f"u-{i % 5_000}",
            "session_id": f"s-{i % 20_000}",
            "product_id": f"p-{i % 997}",
            "category": "electronics",
            "event_type": ("view", "cart", "purchase")[i % 3],
            "price": round(1 + (i % 1000) * 0.37, 2),
            "device": "mobile",
            "country": "FR",
            "ts": "2024-05-01T10:00:00.000000Z",
        }
    )


def fill(bootstrap: str, topic: str, events: int) -> float:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks=1, linger_ms=20, batch_size=256 * 1024
    )
    began = time.perf_counter()
    for i in range(events):
        producer.send(topic, value=event(i), key=key(i))
    producer.flush()
    producer.close()
    return events / (time.perf_counter() - began)


def _raw_consumer(ctx: PipeContext) -> KafkaConsumer:
    consumer = KafkaConsumer(
        bootstrap_servers=ctx.bootstrap,
        group_id=ctx.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=MAX_POLL,
        fetch_max_bytes=50 * 1024 * 1024,
    )
    consumer.subscribe([ctx.source])
    return consumer


def _next_offsets(polled: dict[TopicPartition, list]) -> dict[TopicPartition, OffsetAndMetadata]:
    return {tp: OffsetAndMetadata(recs[-1].offset + 1, "", -1) for tp, recs in polled.items()}


def raw_pipe(ctx: PipeContext) -> int:
    """kafka-python only: poll, send each value as is, commit offsets after a flush at the end."""
    consumer = _raw_consumer(ctx)
    producer = KafkaProducer(
        bootstrap_servers=ctx.bootstrap, acks="all", linger_ms=5, batch_size=BATCH_BYTES
    )
    seen, offsets = 0, {}
    while seen < ctx.events:
        polled = consumer.poll(timeout_ms=500, max_records=MAX_POLL)
        if polled and not ctx.started:
            ctx.started = time.perf_counter()
        for records in polled.values():
            for record in records:
                producer.send(ctx.sink, value=record.value, key=record.key)
            seen += len(records)
        offsets.update(_next_offsets(polled))
    producer.flush()
    consumer.commit(offsets)
    ctx.finished = time.perf_counter()
    consumer.close()
    producer.close()
    return seen


def raw_transactional_pipe(ctx: PipeContext) -> int:
    """kafka-python only: one transaction per poll, offsets sent in it (KIP-447 metadata)."""
    consumer = _raw_consumer(ctx)
    producer = KafkaProducer(
        bootstrap_servers=ctx.bootstrap,
        transactional_id=transactional_id_for(ctx.group),
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        batch_size=BATCH_BYTES,
    )
    producer.init_transactions()
    seen = 0
    while seen < ctx.events:
        polled = consumer.poll(timeout_ms=500, max_records=MAX_POLL)
        if not polled:
            continue
        if not ctx.started:
            ctx.started = time.perf_counter()
        producer.begin_transaction()
        for records in polled.values():
            for record in records:
                producer.send(ctx.sink, value=record.value, key=record.key)
            seen += len(records)
        producer.send_offsets_to_transaction(_next_offsets(polled), consumer.group_metadata())
        producer.commit_transaction()
    ctx.finished = time.perf_counter()
    consumer.close()
    producer.close()
    return seen


def lakecast_loop_pipe(ctx: PipeContext) -> int:
    """``run_loop`` in exactly-once mode with a process that forwards every value unchanged."""
    kafka = KafkaSettings(bootstrap_servers=ctx.bootstrap)
    consumer = build_consumer(kafka, group_id=ctx.group, fetch_max_bytes=50 * 1024 * 1024)
    producer = build_producer(kafka, transactional_id=transactional_id_for(ctx.group))
    stop = threading.Event()
    seen = 0

    def forward(records: list) -> BatchResult:
        return BatchResult([OutputRecord(ctx.sink, r.value, r.key) for r in records])

    def count(report: BatchReport) -> None:
        nonlocal seen
        if not ctx.started:
            ctx.started = time.perf_counter() - report.process_s - report.commit_s
        seen += report.records
        if seen >= ctx.events:
            ctx.finished = time.perf_counter()
            stop.set()

    run_loop(
        consumer,
        producer,
        forward,
        topics=[ctx.source],
        dlq_topic=f"{ctx.sink}.dlq",
        stop_event=stop,
        loop=LoopSettings(max_batch=ctx.max_batch, max_wait_ms=20),
        on_batch=count,
    )
    return seen


@dataclass
class ServedModel:
    """A registry with ``purchase@champion`` and an entity snapshot, in a temporary folder."""

    registry: str
    snapshot: str


_served: ServedModel | None = None


def served_model() -> ServedModel:
    """Built once per run: a tiny scikit-learn model and snapshot (lakecast.testing)."""
    global _served
    if _served is None:
        from lakecast.testing.features import write_snapshot
        from lakecast.testing.models import register_model

        root = Path(tempfile.mkdtemp(prefix="lakecast-bench-lake-"))
        _served = ServedModel(str(root / "registry"), str(root / "entity_features"))
        register_model(_served.registry)
        write_snapshot(_served.snapshot)
    return _served


def build_inference_worker(ctx: PipeContext, source: str) -> object:
    from lakecast.registry import Registry
    from lakecast.serving.model_source import ModelSource, SnapshotSource
    from lakecast.serving.worker import InferenceWorker
    from lakecast.serving.worker_config import WorkerConfig

    served = served_model()
    config = WorkerConfig(
        topics=TopicNames(
            events=source,
            predictions=ctx.sink,
            dlq=f"{ctx.sink}.dlq",
            metrics=f"{ctx.sink}.metrics",
        ),
        serving=ServingSettings(
            group_id=ctx.group, max_batch=ctx.max_batch, max_wait_ms=20, sample_interval_s=5.0
        ),
    )
    models = ModelSource(Registry(served.registry), "purchase@champion")
    return InferenceWorker(config, models, SnapshotSource(served.snapshot))


def inference_worker_pipe(ctx: PipeContext) -> int:
    """The inference worker (exactly once): decode, features, snapshot lookup, predict."""

    kafka = KafkaSettings(bootstrap_servers=ctx.bootstrap)
    worker = build_inference_worker(ctx, ctx.source)
    stop = threading.Event()
    seen = 0

    def count(report: BatchReport) -> None:
        nonlocal seen
        if not ctx.started:
            ctx.started = time.perf_counter() - report.process_s - report.commit_s
        seen += report.records
        if seen >= ctx.events:
            ctx.finished = time.perf_counter()
            stop.set()

    worker.run(kafka, stop, count)  # type: ignore[attr-defined]
    return seen


PIPES: list[tuple[str, Pipe]] = [
    ("raw pipe (kafka-python, no txn)", raw_pipe),
    ("raw transactional pipe (txn per poll)", raw_transactional_pipe),
    ("lakecast run_loop, exactly-once, forward", lakecast_loop_pipe),
    (WORKER_PIPE, inference_worker_pipe),
]
