"""Synthetic ``kind=sample`` records for tests, demos and benchmarks of the monitoring loop.

They have every field a real worker's :class:`~lakecast.monitoring.samples.SampleWindow`
writes, so the monitor and the autoscaler can be exercised without running the inference
worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from lakecast.kafka.timestamps import to_iso


def synthetic_sample(
    source: str,
    ts: float,
    *,
    records_in_per_s: float = 100.0,
    latency_p99_ms: float | None = 20.0,
    lag: dict[str, int] | None = None,
    cpu_percent: float = 40.0,
    dlq_rate: float = 0.0,
    score_mean: float | None = 0.3,
    window_s: float = 1.0,
    partitions: int = 1,
) -> dict[str, Any]:
    """A sample record as a worker sends it (``ts`` in epoch seconds)."""
    lags = lag if lag is not None else {}
    records_in = round(records_in_per_s * window_s)
    p99 = latency_p99_ms
    return {
        "kind": "sample",
        "source": source,
        "ts": to_iso(ts),
        "window_s": window_s,
        "records_in": records_in,
        "records_out": records_in,
        "dead_letters": round(records_in * dlq_rate),
        "records_in_per_s": records_in_per_s,
        "dlq_rate": dlq_rate,
        "batches": 1,
        "batch_size_mean": float(records_in),
        "latency_ms": {
            "p50": None if p99 is None else p99 / 4,
            "p95": None if p99 is None else p99 / 2,
            "p99": p99,
            "mean": None if p99 is None else p99 / 4,
        },
        "model_latency_ms": {"p50": 1.0, "p95": 2.0, "p99": 3.0, "mean": 1.0},
        "lag": lags,
        "lag_total": int(sum(lags.values())),
        "partitions": partitions,
        "cpu_percent": cpu_percent,
        "rss_bytes": 200_000_000,
        "model": {"name": "synthetic", "version": "1.0.0", "sha256": "0" * 64},
        "snapshot_age_s": None,
        "score": {
            "count": records_in if score_mean is not None else 0,
            "mean": score_mean,
            "std": None if score_mean is None else 0.1,
            "histogram": [0] * 10,
        },
        "variants": {},
    }


@dataclass(frozen=True)
class Incident:
    """A change injected into a synthetic fleet: ``metric`` times ``factor`` for some steps.

    Attributes:
        metric: ``latency_p99_ms`` or ``records_in_per_s`` (or ``cpu_percent``, ``lag``).
        start: first step affected.
        steps: how many steps it lasts.
        factor: the multiplier (10 for a latency spike, 0.3 for a throughput drop).
        workers: the workers affected (None: all).
    """

    metric: str
    start: int
    steps: int
    factor: float
    workers: tuple[str, ...] | None = None

    def applies(self, step: int, worker: str) -> bool:
        in_time = self.start <= step < self.start + self.steps
        return in_time and (self.workers is None or worker in self.workers)


def synthetic_fleet(
    workers: int,
    steps: int,
    *,
    t0: float,
    interval_s: float = 1.0,
    incidents: tuple[Incident, ...] = (),
    seed: int = 0,
    noise: float = 0.05,
) -> Iterator[dict[str, Any]]:
    """Samples of ``workers`` steady workers (Gaussian noise of ``noise`` relative), in time order.

    Worker ``w-i`` sends one sample per step at ``t0 + step * interval_s`` (plus a small
    offset per worker); ``incidents`` multiply a metric for some steps.
    """
    rng = np.random.default_rng(seed)
    names = [f"w-{i}" for i in range(workers)]
    for step in range(steps):
        for index, name in enumerate(names):
            base = {
                "records_in_per_s": 200.0,
                "latency_p99_ms": 40.0,
                "cpu_percent": 45.0,
                "lag": 30.0,
            }
            values = {k: max(v * (1 + noise * rng.standard_normal()), 0.0) for k, v in base.items()}
            for incident in incidents:
                if incident.applies(step, name):
                    values[incident.metric] *= incident.factor
            yield synthetic_sample(
                name,
                t0 + step * interval_s + 0.01 * index,
                records_in_per_s=values["records_in_per_s"],
                latency_p99_ms=values["latency_p99_ms"],
                cpu_percent=values["cpu_percent"],
                lag={f"events:{index}": round(values["lag"])},
                score_mean=float(0.3 + 0.01 * rng.standard_normal()),
                window_s=interval_s,
            )
