"""The ``kind=sample`` records a streaming worker sends to the ``metrics`` topic.

A :class:`SampleWindow` accumulates what one worker saw since its last sample (records in,
out and dead-lettered, latencies, scores) and turns it into one JSON-ready record with
throughput, latency percentiles, lag, CPU, memory and a summary of the score distribution:
the input of the monitor, the autoscaler and the canary analysis.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

SAMPLE_KIND = "sample"
# The raw values kept per window for the canary analysis (Mann-Whitney needs samples, not
# percentiles); bounded so that a sample record stays small.
MAX_RAW_VALUES = 200


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "mean": None}
    array = np.asarray(values, dtype=np.float64)
    p50, p95, p99 = np.percentile(array, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "mean": float(array.mean())}


def _subsample(values: list[float], limit: int = MAX_RAW_VALUES) -> list[float]:
    if len(values) <= limit:
        return [round(v, 6) for v in values]
    step = len(values) / limit
    return [round(values[int(i * step)], 6) for i in range(limit)]


@dataclass
class VariantStats:
    """What one variant (champion, candidate, ...) served in the window."""

    records: int = 0
    errors: int = 0
    latency_ms: list[float] = field(default_factory=list)
    model_latency_ms: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    score_differences: list[float] = field(default_factory=list)  # shadow minus served
    # Distinct targeting keys: the split is by user, so the sample-ratio check counts users
    # (a few heavy users make event counts stray far from the split by chance).
    users: set[str] = field(default_factory=set)

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "records": self.records,
            "errors": self.errors,
            "users": len(self.users),
            "latency_ms": _subsample(self.latency_ms),
            "model_latency_ms": _subsample(self.model_latency_ms),
            "scores": _subsample(self.scores),
        }
        if self.score_differences:
            record["score_difference"] = _percentiles(self.score_differences)
        return record


@dataclass
class SampleWindow:
    """Accumulates one worker's figures between two samples."""

    source: str
    started: float = field(default_factory=time.monotonic)
    records_in: int = 0
    records_out: int = 0
    dead_letters: int = 0
    batches: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    model_latency_ms: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    variants: dict[str, VariantStats] = field(default_factory=dict)
    # Per model version ("name:version"): NaN or infinite scores, dead-lettered, not served.
    nonfinite_scores: dict[str, int] = field(default_factory=dict)

    def variant(self, name: str) -> VariantStats:
        return self.variants.setdefault(name, VariantStats())

    def add_batch(
        self,
        *,
        size: int,
        out: int,
        dead: int,
        latency_ms: list[float],
        model_latency_ms: float,
        scores: list[float],
    ) -> None:
        self.batches += 1
        self.records_in += size
        self.records_out += out
        self.dead_letters += dead
        self.batch_sizes.append(size)
        self.latency_ms.extend(latency_ms)
        self.model_latency_ms.append(model_latency_ms)
        self.scores.extend(scores)

    def to_record(
        self,
        *,
        lag: dict[str, int],
        cpu_percent: float,
        rss_bytes: int,
        model: dict[str, str],
        snapshot_age_s: float | None,
        partitions: int,
        now: float | None = None,
    ) -> dict[str, Any]:
        """The ``kind=sample`` record for this window (JSON-ready)."""
        elapsed = max((now or time.monotonic()) - self.started, 1e-6)
        scores = np.asarray(self.scores, dtype=np.float64)
        return {
            "kind": SAMPLE_KIND,
            "source": self.source,
            "ts": datetime.now(UTC).isoformat(),
            "window_s": round(elapsed, 3),
            "records_in": self.records_in,
            "records_out": self.records_out,
            "dead_letters": self.dead_letters,
            "records_in_per_s": self.records_in / elapsed,
            "dlq_rate": self.dead_letters / max(self.records_in, 1),
            "batches": self.batches,
            "batch_size_mean": float(np.mean(self.batch_sizes)) if self.batch_sizes else 0.0,
            "latency_ms": _percentiles(self.latency_ms),
            "model_latency_ms": _percentiles(self.model_latency_ms),
            # Per partition ("topic:partition" -> lag) so the autoscaler can deduplicate
            # partitions that moved between workers during a rebalance.
            "lag": lag,
            "lag_total": int(sum(lag.values())),
            "partitions": partitions,
            "cpu_percent": cpu_percent,
            "rss_bytes": rss_bytes,
            "model": model,
            "snapshot_age_s": snapshot_age_s,
            "score": {
                "count": int(scores.size),
                "mean": float(scores.mean()) if scores.size else None,
                "std": float(scores.std()) if scores.size else None,
                "histogram": np.histogram(scores, bins=10, range=(0.0, 1.0))[0].tolist(),
            },
            "variants": {name: stats.to_record() for name, stats in self.variants.items()},
            "nonfinite_scores": dict(self.nonfinite_scores),
        }
