"""The worker's end-to-end latency at a fixed rate, fed by a paced producer in another process
(benchmarks/streaming.py's half-rate run)."""

from __future__ import annotations

import multiprocessing
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaProducer
from streaming_pipes import PipeContext, build_inference_worker, event, key

from lakecast.config import KafkaSettings, settings
from lakecast.kafka.batch import BatchReport
from lakecast.kafka.clients import (
    TopicSpec,
    build_admin,
    ensure_topics,
)
from lakecast.local.jars import resolve_jars

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
