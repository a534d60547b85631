"""Throughput of the streaming path: events/s through consume -> produce, raw and via lakecast.

Every pipe reads the same pre-filled topic with its own consumer group and writes its own
output topic, so the lines of the table are measured in one run against one broker and can be
compared. The raw pipes use kafka-python directly and do no work; they are the ceiling that
the lakecast loop and the inference worker are measured against. Then the worker runs again
at half its maximum rate, fed by a paced producer in another process (Kafka's Java client by
default, see :func:`paced_load`), for its end-to-end latency.

    .venv/bin/python benchmarks/streaming.py                            # local broker, 200k events
    .venv/bin/python benchmarks/streaming.py --bootstrap host:9092 --events 50000 --partitions 6

To add a pipe (the inference worker), write ``def pipe(ctx: PipeContext) -> int`` that drains
``ctx.source`` into ``ctx.sink`` and returns the events it consumed, and append it to ``PIPES``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import OffsetAndMetadata, TopicPartition

from lakecast.config import KafkaSettings, LoopSettings, ServingSettings, TopicNames, settings
from lakecast.kafka.batch import BatchReport, BatchResult, OutputRecord
from lakecast.kafka.clients import (
    BATCH_BYTES,
    TopicSpec,
    build_admin,
    build_consumer,
    build_producer,
    ensure_topics,
    transactional_id_for,
)
from lakecast.kafka.loop import run_loop
from lakecast.local.jars import resolve_jars
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


PACED_PRODUCER = Path(__file__).with_name("PacedProducer.java")
PACED_EVENTS = 20_000  # distinct events the JVM generator cycles through (4 per user)


def _paced_producer(bootstrap: str, topic: str, rate: float, seconds: float) -> None:
    """Runs in its own process: ``rate`` events/s for ``seconds``, in 5 ms steps."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)
    began = time.perf_counter()
    sent = 0
    while (elapsed := time.perf_counter() - began) < seconds:
        due = int(elapsed * rate)
        while sent < due:
            producer.send(topic, value=event(sent), key=key(sent))
            sent += 1
        time.sleep(0.005)
    producer.flush()
    producer.close()


def paced_load(generator: str, bootstrap: str, topic: str, rate: float, seconds: float) -> None:
    """``rate`` events/s to ``topic`` for ``seconds`` from another process; returns when done.

    ``jvm`` (the default) is Kafka's Java producer running PacedProducer.java, ``python`` is
    kafka-python: the same events, keys, pacing and producer settings. The generator is not
    the system under test, but on a small machine it shares the CPUs with it: kafka-python
    spends about 33 us a record (0.3 of a core at 9,000 events/s), the JVM a few. On this
    2-core machine, a warm broker, 9,000 events/s, two runs each, the worker's p50/p99 were
    26-28/68-71 ms under the Python generator and 21/44 ms under the JVM one.
    """
    if generator == "python":
        process = multiprocessing.get_context("spawn").Process(
            target=_paced_producer, args=(bootstrap, topic, rate, seconds)
        )
        process.start()
        process.join()
        return
    java = shutil.which("java")
    if java is None:
        raise SystemExit("the JVM generator needs `java` (a JDK) on PATH; or --generator python")
    with tempfile.NamedTemporaryFile("wb", suffix=".tsv") as events:
        events.write(b"".join(key(i) + b"\t" + event(i) + b"\n" for i in range(PACED_EVENTS)))
        events.flush()
        classpath = resolve_jars(settings()).kafka_classpath
        subprocess.run(
            [java, "-Xmx256m", "-XX:+UseSerialGC", "-cp", classpath, str(PACED_PRODUCER),
             bootstrap, topic, str(rate), str(seconds), events.name],
            check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip


@dataclass(frozen=True)
class LatencyRun:
    """End-to-end latency (event record timestamp -> committed prediction) at a fixed rate."""

    rate: float
    measured: int  # events in the measured window
    p50_ms: float
    p99_ms: float
    window_p99_ms: list[float]  # p99 of each WINDOW_S of the whole run, warm-up included


WINDOW_S = 10.0


def worker_latency_at(
    bootstrap: str,
    rate: float,
    *,
    seconds: float,
    warmup_s: float,
    partitions: int,
    max_batch: int,
    generator: str,
) -> LatencyRun:
    """Produce ``rate`` events/s for ``warmup_s + seconds``; measure the last ``seconds``.

    The warm-up is for the broker more than the worker: a fresh broker JIT-compiles the paths
    of this load (many small transactions) for about a minute. Measured here: compilation
    took 65% of a core in the first 5 s and 20-40% until about 60 s, and the broker's CPU
    went from 0.8 to 0.26 of a core; a long-lived broker has none of that.

    The measured span is long because p99 is about rare events: episodes of 150-300 ms
    (cause not found; not a broker GC pause) come every minute or two on this machine, and
    over 20 s p99 swung from 75 to 211 ms in six runs of the same code, with whether one fell
    in the window. The p99 of every 10 s is printed so they stay visible.
    """
    import numpy as np

    run = uuid.uuid4().hex[:8]
    source, sink = f"bench-paced-{run}", f"bench-paced-out-{run}"
    admin = build_admin(KafkaSettings(bootstrap_servers=bootstrap))
    ensure_topics(admin, [TopicSpec(source, partitions), TopicSpec(sink, partitions),
                          TopicSpec(f"{sink}.dlq"), TopicSpec(f"{sink}.metrics")])  # fmt: skip
    admin.close()
    ctx = PipeContext(bootstrap, source, sink, 0, f"bench-paced-{run}", max_batch)
    worker = build_inference_worker(ctx, source)
    stop = threading.Event()
    committed: list[tuple[float, list[float]]] = []  # (when, latencies of the batch)

    def collect(report: BatchReport) -> None:
        committed.append((time.perf_counter(), worker.last_latencies_s))  # type: ignore[attr-defined]

    thread = threading.Thread(
        target=worker.run,  # type: ignore[attr-defined]
        args=(KafkaSettings(bootstrap_servers=bootstrap), stop, collect),
        daemon=True,
    )
    thread.start()
    time.sleep(5.0)  # join the group, load the model
    began = time.perf_counter()
    paced_load(generator, bootstrap, source, rate, warmup_s + seconds)
    time.sleep(2.0)
    stop.set()
    thread.join(60)

    def latencies_ms(start: float, end: float) -> np.ndarray:
        inside = [lat for when, lats in committed if start <= when - began < end for lat in lats]
        return np.asarray(inside) * 1000

    windows = [latencies_ms(w, w + WINDOW_S) for w in np.arange(0.0, warmup_s + seconds, WINDOW_S)]
    measured = latencies_ms(warmup_s, float("inf"))
    if not measured.size:
        return LatencyRun(rate, 0, float("nan"), float("nan"), [])
    p50, p99 = np.percentile(measured, [50, 99])
    window_p99 = [float(np.percentile(w, 99)) for w in windows if w.size]
    return LatencyRun(rate, measured.size, float(p50), float(p99), window_p99)


PIPES: list[tuple[str, Pipe]] = [
    ("raw pipe (kafka-python, no txn)", raw_pipe),
    ("raw transactional pipe (txn per poll)", raw_transactional_pipe),
    ("lakecast run_loop, exactly-once, forward", lakecast_loop_pipe),
    (WORKER_PIPE, inference_worker_pipe),
]


MODEL_BATCH_SIZES = (20, 200, 2_000)  # a paced worker's batches, up to serving.max_batch


def xla_predictor(predictor: Any) -> Any:
    """``predictor`` (a loaded Keras version) with its forward pass compiled by XLA
    (``jit_compile``): the ``xla`` kind of issue 19, measured, not registered."""
    import tensorflow as tf

    model = predictor.model
    compiled = tf.function(
        lambda xt: model(tf.transpose(xt), training=False), jit_compile=True, reduce_retracing=True
    )
    predictor._forward = lambda xt: compiled(xt).numpy()
    return predictor


def model_batch_times(repeats: int = 30) -> None:
    """The worker's per-batch model time (Predictor.predict on the worker's own feature rows,
    as its loop calls it, one native thread) for a demo-like champion (HistGradientBoosting)
    and challenger (Keras MLP), before (their own flavor) and after (their optimised kinds)."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from lakecast.models.optimize import optimize_version
    from lakecast.registry import Registry
    from lakecast.testing.features import training_matrix
    from lakecast.testing.models import register_with_holdout, write_features_table

    root = Path(tempfile.mkdtemp(prefix="lakecast-bench-models-"))
    try:
        features = str(root / "features")
        write_features_table(features, rows=3_000, online=True)
        registry = Registry(root / "registry")
        versions = []
        for flavor, kinds in (("sklearn", ("onnx",)), ("keras", ("onnx", "onnx-int8"))):
            source = register_with_holdout(registry, features, flavor)  # type: ignore[arg-type]
            versions.append((flavor, "source", source.ref))
            if flavor == "keras":  # measured only: ONNX Runtime is faster at every size here
                versions.append((flavor, "xla", source.ref))
            for kind in kinds:
                versions.append(
                    (flavor, kind, optimize_version(registry, source.ref, kind).record.ref)
                )
        matrix = training_matrix(max(MODEL_BATCH_SIZES))
        print(f"\nper-batch model time, ms (median of {repeats}; one native thread)")
        print(
            f"{'model':<8}{'kind':<11}{'version':<18}"
            + "".join(f"{f'{b} rows':>12}" for b in MODEL_BATCH_SIZES)
        )
        with threadpool_limits(limits=1):
            for flavor, kind, ref in versions:
                _, predictor = registry.load(ref)
                if kind == "xla":
                    predictor = xla_predictor(predictor)
                cells = []
                for size in MODEL_BATCH_SIZES:
                    batch = matrix[:size]
                    predictor.predict(batch)
                    times = []
                    for _ in range(repeats):
                        started = time.perf_counter()
                        predictor.predict(batch)
                        times.append(1_000 * (time.perf_counter() - started))
                    cells.append(f"{np.median(times):>12.3f}")
                print(f"{flavor:<8}{kind:<11}{ref:<18}" + "".join(cells))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-times-only",
        action="store_true",
        help="print only the per-batch model times (before/after optimisation); no broker",
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--bootstrap", help="an existing cluster; default: a local broker")
    parser.add_argument("--only", action="append", help="run only pipes whose name has this")
    parser.add_argument("--latency-seconds", type=float, default=60.0, help="half-rate run, s")
    parser.add_argument(
        "--latency-warmup", type=float, default=60.0, help="half-rate run, s before measuring"
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=settings().serving.max_batch,
        help="lakecast's records per micro-batch (default: conf/lakecast.yaml's serving.max_batch)",
    )
    parser.add_argument(
        "--generator",
        choices=("jvm", "python"),
        default="jvm",
        help="half-rate run's event producer: Kafka's Java client (default) or kafka-python",
    )
    args = parser.parse_args()
    if args.model_times_only:
        model_batch_times()
        return

    with broker(args.bootstrap) as bootstrap:
        run = uuid.uuid4().hex[:8]
        source = f"bench-events-{run}"
        pipes = [(n, p) for n, p in PIPES if not args.only or any(o in n for o in args.only)]
        admin = build_admin(KafkaSettings(bootstrap_servers=bootstrap))
        sinks = [f"bench-out-{i}-{run}" for i in range(len(pipes))]
        ensure_topics(
            admin,
            [TopicSpec(source, args.partitions)]
            + [TopicSpec(s, args.partitions) for s in sinks]
            + [TopicSpec(f"{s}.dlq") for s in sinks],
        )
        admin.close()
        fill_rate = fill(bootstrap, source, args.events)
        print(
            f"broker {bootstrap}; filled {source} ({args.partitions} partitions) with "
            f"{args.events:,} events at {fill_rate:,.0f} events/s; lakecast max batch "
            f"{args.max_batch}, raw pipes poll {MAX_POLL}"
        )

        rows = []
        for (name, pipe), sink in zip(pipes, sinks, strict=True):
            group = f"bench-{run}-{sink}"
            ctx = PipeContext(bootstrap, source, sink, args.events, group, args.max_batch)
            moved = pipe(ctx)
            elapsed = ctx.finished - ctx.started
            rows.append((name, moved, elapsed, moved / elapsed))

        worker_rate = next((rate for name, _, _, rate in rows if name == WORKER_PIPE), None)
        latency = None
        if worker_rate:
            latency = worker_latency_at(
                bootstrap,
                worker_rate / 2,
                seconds=args.latency_seconds,
                warmup_s=args.latency_warmup,
                partitions=args.partitions,
                max_batch=args.max_batch,
                generator=args.generator,
            )

    base = rows[0][3] if rows else 1.0
    print(f"\n{'pipe':<44}{'events':>10}{'seconds':>10}{'events/s':>12}{'vs first':>10}")
    for name, moved, elapsed, rate in rows:
        print(f"{name:<44}{moved:>10,}{elapsed:>10.2f}{rate:>12,.0f}{rate / base:>10.2f}")
    if worker_rate:
        print(f"\nworker / raw pipe throughput: {worker_rate / base:.2f} (target >= 0.6)")
    if latency:
        print(
            f"worker at half its max rate ({latency.rate:,.0f} events/s, {latency.measured:,} "
            f"events in the last {args.latency_seconds:.0f} s of "
            f"{args.latency_warmup + args.latency_seconds:.0f}): end-to-end p50 "
            f"{latency.p50_ms:.1f} ms, p99 {latency.p99_ms:.1f} ms (target p99 <= 100 ms)"
        )
        windows = " ".join(f"{p99:.0f}" for p99 in latency.window_p99_ms)
        print(f"  p99 of each {WINDOW_S:.0f} s of that run, warm-up first (ms): {windows}")
    model_batch_times()


if __name__ == "__main__":
    main()
