"""What a worker measures: Prometheus metrics and the ``kind=sample`` records of the metrics topic.

The Prometheus metrics are defined once, here (``lakecast_worker_`` prefix, few label values).
:class:`WorkerMetrics` is fed by the worker after every committed batch and, every few seconds,
a :class:`Sampler` thread turns the window since the last sample into one ``kind=sample``
record (throughput, latency percentiles, lag per partition, CPU, memory, DLQ count, score
summary, the model in use) sent to the metrics topic with the same figures as the endpoint.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psutil
from prometheus_client import Counter, Gauge, Histogram

from lakecast.kafka.serde import encode_metric
from lakecast.monitoring.prometheus import NONFINITE_SCORES
from lakecast.monitoring.samples import SampleWindow

log = logging.getLogger(__name__)

RECORDS_IN = Counter(
    "lakecast_worker_records_in_total", "Events records the worker consumed and committed."
)
RECORDS_OUT = Counter(
    "lakecast_worker_records_out_total", "Predictions the worker produced, by variant.", ["variant"]
)
DEAD_LETTERS = Counter(
    "lakecast_worker_dead_letters_total",
    "Records sent to the dead-letter topic, by kind.",
    ["kind"],
)
BATCH_SIZE = Histogram(
    "lakecast_worker_batch_size",
    "Records per committed micro-batch.",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)
END_TO_END_LATENCY = Histogram(
    "lakecast_worker_end_to_end_latency_seconds",
    "From the event record's timestamp to its prediction being committed.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
MODEL_LATENCY = Histogram(
    "lakecast_worker_model_latency_seconds",
    "Time of one model predict call on a micro-batch.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
CONSUMER_LAG = Gauge(
    "lakecast_worker_consumer_lag",
    "Records behind the end of a partition this worker owns.",
    ["topic", "partition"],
)
CPU_PERCENT = Gauge("lakecast_worker_cpu_percent", "CPU use of the worker process (100 = a core).")
RESIDENT_MEMORY = Gauge("lakecast_worker_resident_memory_bytes", "Resident memory of the worker.")
MODEL_IN_USE = Gauge(
    "lakecast_worker_model_info",
    "The model versions the worker serves now (value 1), by variant.",
    ["name", "version", "sha256", "variant"],
)
SNAPSHOT_AGE = Gauge(
    "lakecast_worker_snapshot_age_seconds", "Age of the entity-feature snapshot in use."
)
SNAPSHOT_VERSION = Gauge(
    "lakecast_worker_snapshot_table_version", "Delta version of the entity-feature snapshot."
)
SHADOW_DIFFERENCE = Histogram(
    "lakecast_worker_shadow_score_difference",
    "Shadow model score minus the served score, per event (never served).",
    buckets=(-0.5, -0.2, -0.1, -0.05, -0.01, 0.0, 0.01, 0.05, 0.1, 0.2, 0.5),
)
ISOLATED_BATCHES = Counter(
    "lakecast_worker_isolated_batches_total",
    "Batches that failed as a whole and were processed record by record.",
)


def observe_many(histogram: Histogram, values: np.ndarray) -> None:
    """``histogram.observe(v)`` for each of ``values``, counted per bucket with numpy.

    prometheus_client observes one value at a time (a loop over the buckets and a lock per
    value, about 1.5 us), and a batch has up to thousands. This adds to the histogram's own
    bucket and sum values as ``observe`` does; they are not public API, so
    tests/unit/test_worker_metrics.py checks the result against ``observe``.
    """
    if not values.size:
        return
    bounds = histogram._upper_bounds
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    histogram._sum.inc(float(values.sum()))
    for bucket, count in zip(histogram._buckets, counts.tolist(), strict=False):
        if count:
            bucket.inc(count)


class WorkerMetrics:
    """Counts committed batches into Prometheus and into the current sample window."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._lock = threading.Lock()
        self.window = SampleWindow(source)
        self.lag: dict[str, int] = {}
        self.models: dict[str, dict[str, str]] = {}
        self.totals = {"records_in": 0, "records_out": 0, "dead_letters": 0}

    def record_shadow(self, shadow: list[tuple[float, float]]) -> None:
        """Scores of shadow models and their differences to the served score."""
        for _, difference in shadow:
            SHADOW_DIFFERENCE.observe(difference)
        with self._lock:
            stats = self.window.variant("shadow")
            stats.records += len(shadow)
            stats.scores.extend(score for score, _ in shadow)
            stats.score_differences.extend(difference for _, difference in shadow)

    def record_batch(
        self,
        *,
        size: int,
        latencies_s: Sequence[float] | np.ndarray,
        dead_kinds: list[str],
        variant_scores: Mapping[str, list[float]],
        variant_latencies_s: Mapping[str, Sequence[float] | np.ndarray],
        model_seconds: float,
        isolated: bool,
        variant_model_ms: Mapping[str, list[float]] | None = None,
        variant_errors: Mapping[str, int] | None = None,
        variant_users: Mapping[str, set[str]] | None = None,
    ) -> None:
        """One committed batch: its size, the end-to-end latency of each prediction, ..."""
        RECORDS_IN.inc(size)
        BATCH_SIZE.observe(size)
        for kind in dead_kinds:
            DEAD_LETTERS.labels(kind=kind).inc()
        latencies = np.asarray(latencies_s, np.float64)
        observe_many(END_TO_END_LATENCY, latencies)
        if isolated:
            ISOLATED_BATCHES.inc()
        out = sum(len(scores) for scores in variant_scores.values())
        scores = [score for values in variant_scores.values() for score in values]
        with self._lock:
            self.totals["records_in"] += size
            self.totals["records_out"] += out
            self.totals["dead_letters"] += len(dead_kinds)
            self.window.add_batch(
                size=size,
                out=out,
                dead=len(dead_kinds),
                latency_ms=(latencies * 1000).tolist(),
                model_latency_ms=model_seconds * 1000,
                scores=scores,
            )
            for variant, values in variant_scores.items():
                RECORDS_OUT.labels(variant=variant).inc(len(values))
                stats = self.window.variant(variant)
                stats.records += len(values)
                stats.scores.extend(values)
                variant_latencies = np.asarray(variant_latencies_s.get(variant, ()), np.float64)
                stats.latency_ms.extend((variant_latencies * 1000).tolist())
            for variant, errors in (variant_errors or {}).items():
                stats = self.window.variant(variant)
                stats.records += errors  # a failed record was routed to the variant too
                stats.errors += errors
            for variant, users in (variant_users or {}).items():
                self.window.variant(variant).users.update(users)
            for variant, durations in (variant_model_ms or {}).items():
                if variant != "shadow":  # a shadow's calls say nothing about serving latency
                    self.window.variant(variant).model_latency_ms.extend(durations)

    def record_nonfinite(self, counts: Mapping[str, int]) -> None:
        """NaN or infinite scores per model version ("name:version") of a committed batch."""
        for key, count in counts.items():
            name, _, version = key.rpartition(":")
            NONFINITE_SCORES.labels(name, version).inc(count)
        with self._lock:
            for key, count in counts.items():
                found = self.window.nonfinite_scores
                found[key] = found.get(key, 0) + count

    def observe_model(self, seconds: float) -> None:
        MODEL_LATENCY.observe(seconds)

    def set_lag(self, lag: Mapping[tuple[str, int], int]) -> None:
        """Lag of every partition owned now; partitions given up disappear from the gauge."""
        CONSUMER_LAG.clear()
        for (topic, partition), value in lag.items():
            CONSUMER_LAG.labels(topic=topic, partition=str(partition)).set(value)
        with self._lock:
            self.lag = {f"{topic}:{partition}": int(v) for (topic, partition), v in lag.items()}

    def set_models(self, models: Mapping[str, dict[str, str]]) -> None:
        """Variant -> {name, version, sha256} of the models serving now."""
        if models == self.models:
            return
        MODEL_IN_USE.clear()
        for variant, model in models.items():
            MODEL_IN_USE.labels(variant=variant, **model).set(1)
        with self._lock:
            self.models = dict(models)

    def take_sample(
        self, *, cpu_percent: float, rss_bytes: int, snapshot_age_s: float | None
    ) -> dict[str, Any]:
        """The sample record of the window since the last call; a new window starts."""
        with self._lock:
            window, self.window = self.window, SampleWindow(self.source)
            lag = dict(self.lag)
            models = dict(self.models)
            totals = dict(self.totals)
        record = window.to_record(
            lag=lag,
            cpu_percent=cpu_percent,
            rss_bytes=rss_bytes,
            model=models.get("champion") or next(iter(models.values()), {}),
            snapshot_age_s=snapshot_age_s,
            partitions=len(lag),
        )
        record["models"] = models
        record["totals"] = totals
        return record


class Sampler:
    """Every ``interval_s``: CPU and memory gauges, and a sample record sent with ``send``."""

    def __init__(
        self,
        metrics: WorkerMetrics,
        send: Callable[[bytes, bytes], object],
        *,
        interval_s: float,
        snapshot_age: Callable[[], float | None],
        snapshot_version: Callable[[], int | None],
    ) -> None:
        self.metrics = metrics
        self.send = send
        self.interval_s = interval_s
        self.snapshot_age = snapshot_age
        self.snapshot_version = snapshot_version
        self.process = psutil.Process()
        self.process.cpu_percent(None)  # the first call only starts the measurement
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self.sent = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop, sending a last sample for the window in progress."""
        self._stop.set()
        self._thread.join(timeout=10)
        self.sample_once()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample_once()
            except Exception:
                log.warning("sample failed", exc_info=True)

    def sample_once(self) -> dict[str, Any]:
        cpu = self.process.cpu_percent(None)
        rss = self.process.memory_info().rss
        age = self.snapshot_age()
        version = self.snapshot_version()
        CPU_PERCENT.set(cpu)
        RESIDENT_MEMORY.set(rss)
        if age is not None:
            SNAPSHOT_AGE.set(age)
        if version is not None:
            SNAPSHOT_VERSION.set(version)
        record = self.metrics.take_sample(cpu_percent=cpu, rss_bytes=rss, snapshot_age_s=age)
        fields = {k: v for k, v in record.items() if k not in ("kind", "source", "ts")}
        value = encode_metric("sample", self.metrics.source, datetime.now(UTC), fields)
        self.send(self.metrics.source.encode(), value)
        self.sent += 1
        return record


def lag_of(consumer: Any) -> dict[tuple[str, int], int]:
    """End offset minus position of each owned partition whose end is known (no request made)."""
    lag: dict[tuple[str, int], int] = {}
    for tp in consumer.assignment():
        end = consumer.highwater(tp)
        if end is None:
            continue
        try:
            position = consumer.position(tp, timeout_ms=0)
        except Exception:  # no position yet (kafka-python raises on a zero timeout)
            position = None
        if position is not None:
            lag[(tp.topic, tp.partition)] = max(0, int(end) - int(position))
    return lag
