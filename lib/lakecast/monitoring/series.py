"""The monitor's series: sample records in, one point per (source, metric) out.

A worker's ``kind=sample`` record (see :mod:`lakecast.monitoring.samples`) is checked against
the contract and reduced to the six figures the monitor watches (:data:`METRICS`). Each worker
gives its own series; :class:`FleetAggregator` adds the fleet's series (source ``all``) by
closing fixed windows of sample time over the latest sample of each worker: throughput and
lag are sums, p99 latency the worst worker's, CPU a mean, DLQ rate and mean score weighted by
the records behind them. :class:`SeriesState` keeps a series' detector, its recent points
(the window an anomaly record shows) and its cooldown.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lakecast.errors import DataError, InvalidRecordError
from lakecast.kafka.timestamps import to_epoch
from lakecast.monitoring.detectors import Detector

FLEET_SOURCE = "all"
# Metric name -> what it is. ``records_in_per_s`` and ``lag`` are the names the autoscaler's
# anomaly hold looks for (``conf/autoscale.json`` anomalies.metrics).
METRICS: dict[str, str] = {
    "records_in_per_s": "records consumed per second",
    "latency_p99_ms": "p99 end-to-end latency in ms",
    "lag": "consumer lag, summed over partitions",
    "cpu_percent": "CPU percent of a process (100 = one core)",
    "dlq_rate": "share of records dead-lettered",
    "score_mean": "mean model score",
}
# The fields a sample must carry (a null inside ``latency_ms`` or ``score`` is a window
# without records, which is allowed).
REQUIRED_FIELDS = ("records_in_per_s", "latency_ms", "lag_total", "cpu_percent", "dlq_rate")


def _where(record: Mapping[str, Any]) -> str:
    source = record.get("source")
    return f"sample from {source!r}" if isinstance(source, str) else "sample"


def _number(value: object, name: str, where: str, *, nullable: bool = False) -> float | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        msg = f"{where}: field {name!r} must be a finite number, found {value!r}"
        raise InvalidRecordError(msg, field=name)
    if value < 0:
        msg = f"{where}: field {name!r} must not be negative, found {value!r}"
        raise InvalidRecordError(msg, field=name)
    return float(value)


def _object(value: object, name: str, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        msg = f"{where}: field {name!r} must be an object, found {type(value).__name__}"
        raise InvalidRecordError(msg, field=name)
    return value


@dataclass(frozen=True)
class MonitoredSample:
    """A checked sample: the watched figures plus what fleet aggregation weighs them by."""

    source: str
    ts: float
    values: Mapping[str, float | None]
    records_in: float | None = None
    dead_letters: float | None = None
    score_count: float | None = None
    partition_lags: Mapping[str, float] | None = None


def parse_sample(record: Mapping[str, Any]) -> MonitoredSample:
    """Check a ``kind=sample`` record against the contract and pick the watched figures.

    Raises:
        InvalidRecordError: ``source`` or ``ts`` or a required field is missing, or a field
            has the wrong type or a negative value; ``field`` names it.
    """
    where = _where(record)
    source = record.get("source")
    if not isinstance(source, str) or not source:
        msg = f"{where}: field 'source' must be a non-empty string, found {source!r}"
        raise InvalidRecordError(msg, field="source")
    if record.get("ts") is None:
        msg = f"{where}: field 'ts' is missing"
        raise InvalidRecordError(msg, field="ts")
    try:
        ts = to_epoch(record["ts"])
    except DataError as exc:
        msg = f"{where}: {exc}"
        raise InvalidRecordError(msg, field="ts") from exc
    missing = [name for name in REQUIRED_FIELDS if name not in record]
    if missing:
        msg = f"{where}: required field(s) {missing} missing"
        raise InvalidRecordError(msg, field=missing[0])
    latency = _object(record["latency_ms"], "latency_ms", where)
    score = _object(record.get("score") or {}, "score", where)
    raw_lag = record.get("lag")
    partition_lags: dict[str, float] | None = None
    if raw_lag is not None:
        lags = _object(raw_lag, "lag", where)
        partition_lags = {str(p): _number(v, f"lag[{p!r}]", where) or 0.0 for p, v in lags.items()}
    values: dict[str, float | None] = {
        "records_in_per_s": _number(record["records_in_per_s"], "records_in_per_s", where),
        "latency_p99_ms": _number(latency.get("p99"), "latency_ms.p99", where, nullable=True),
        "lag": _number(record["lag_total"], "lag_total", where),
        "cpu_percent": _number(record["cpu_percent"], "cpu_percent", where),
        "dlq_rate": _number(record["dlq_rate"], "dlq_rate", where),
        "score_mean": _number(score.get("mean"), "score.mean", where, nullable=True),
    }
    return MonitoredSample(
        source=source,
        ts=ts,
        values=values,
        records_in=_number(record.get("records_in"), "records_in", where, nullable=True),
        dead_letters=_number(record.get("dead_letters"), "dead_letters", where, nullable=True),
        score_count=_number(score.get("count"), "score.count", where, nullable=True),
        partition_lags=partition_lags,
    )


@dataclass(frozen=True)
class FleetPoint:
    """One closed window of the fleet: the aggregate figures and how many workers made them."""

    ts: float
    values: Mapping[str, float | None]
    workers: int


def _weighted_mean(pairs: list[tuple[float, float | None]]) -> float | None:
    """Mean of values weighted by counts; a plain mean when any count is unknown or all zero."""
    if not pairs:
        return None
    weights = [w for _, w in pairs]
    if any(w is None for w in weights) or sum(w or 0.0 for w in weights) <= 0:
        return sum(v for v, _ in pairs) / len(pairs)
    return sum(v * (w or 0.0) for v, w in pairs) / sum(w or 0.0 for w in weights)


def aggregate(samples: list[MonitoredSample]) -> dict[str, float | None]:
    """The fleet's figures from one sample per worker (see the module docstring)."""

    def present(metric: str) -> list[float]:
        return [v for s in samples if (v := s.values.get(metric)) is not None]

    rates, p99s, cpus = (
        present("records_in_per_s"),
        present("latency_p99_ms"),
        present("cpu_percent"),
    )
    by_partition: dict[str, tuple[float, float]] = {}
    plain_lag = 0.0
    for s in samples:
        if s.partition_lags:
            # During a rebalance two workers can report a partition; the newest report wins.
            for partition, lag in s.partition_lags.items():
                known = by_partition.get(partition)
                if known is None or s.ts >= known[0]:
                    by_partition[partition] = (s.ts, lag)
        else:
            plain_lag += s.values.get("lag") or 0.0
    dlq = [(v, s.records_in) for s in samples if (v := s.values.get("dlq_rate")) is not None]
    scores = [
        (v, s.score_count if s.score_count is not None else s.records_in)
        for s in samples
        if (v := s.values.get("score_mean")) is not None
    ]
    return {
        "records_in_per_s": sum(rates) if rates else None,
        "latency_p99_ms": max(p99s) if p99s else None,
        "lag": plain_lag + sum(lag for _, lag in by_partition.values()) if samples else None,
        "cpu_percent": sum(cpus) / len(cpus) if cpus else None,
        "dlq_rate": _weighted_mean(dlq),
        "score_mean": _weighted_mean(scores),
    }


@dataclass
class FleetAggregator:
    """Closes windows of ``window_s`` seconds of sample time into fleet points.

    A window closes when a sample of a later window arrives (or, through :meth:`close`, when
    the service has waited long enough); it aggregates the latest sample of each worker that
    is younger than ``max_age_s`` at the window's end. A window is closed once: a straggler
    updates its worker's state but never reopens it.
    """

    window_s: float = 5.0
    max_age_s: float = 15.0
    _latest: dict[str, MonitoredSample] = field(default_factory=dict, init=False)
    _open: int | None = field(default=None, init=False)
    _closed_through: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.max_age_s <= 0:
            msg = f"fleet aggregator: window_s and max_age_s must be positive, got {self}"
            raise ValueError(msg)

    @property
    def has_open_window(self) -> bool:
        return self._open is not None

    def add(self, sample: MonitoredSample) -> list[FleetPoint]:
        """Take one worker sample; returns the window it closed, if any."""
        bucket = math.floor(sample.ts / self.window_s)
        closed: list[FleetPoint] = []
        if self._open is not None and bucket > self._open:
            closed = self.close()
        known = self._latest.get(sample.source)
        if known is None or sample.ts >= known.ts:
            self._latest[sample.source] = sample
        if self._closed_through is None or bucket > self._closed_through:
            self._open = bucket if self._open is None else max(self._open, bucket)
        return closed

    def close(self) -> list[FleetPoint]:
        """Close the open window now (the service calls this when samples stop coming)."""
        if self._open is None:
            return []
        end = (self._open + 1) * self.window_s
        self._latest = {k: s for k, s in self._latest.items() if end - s.ts < self.max_age_s}
        live = [s for s in self._latest.values() if s.ts < end]
        self._closed_through, self._open = self._open, None
        if not live:
            return []
        return [FleetPoint(ts=end, values=aggregate(live), workers=len(live))]


@dataclass(frozen=True)
class ScoredPoint:
    """A series' new point with its score and the context that explains it."""

    ts: float
    value: float
    score: float
    window: tuple[tuple[float, float], ...]
    baseline: Mapping[str, float | int | None]


def baseline_stats(values: list[float]) -> dict[str, float | int | None]:
    """Count, mean, std, median, min and max of the points before the scored one."""
    if not values:
        return {"n": 0, "mean": None, "std": None, "median": None, "min": None, "max": None}
    array = np.asarray(values, dtype=np.float64)
    return {
        "n": int(array.size),
        "mean": float(array.mean()),
        "std": float(array.std()),
        "median": float(np.median(array)),
        "min": float(array.min()),
        "max": float(array.max()),
    }


@dataclass
class SeriesState:
    """One (source, metric) series: its causal detector, recent points and cooldown.

    Args:
        source: the worker id, or ``all`` for the fleet.
        metric: one of :data:`METRICS`.
        detector: a fresh detector that sees only this series.
        context: how many recent points an anomaly record shows (and the baseline covers).
    """

    source: str
    metric: str
    detector: Detector
    context: int = 30
    _points: deque[tuple[float, float]] = field(init=False)
    _last_alert: float | None = field(default=None, init=False)
    _last_ts: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._points = deque(maxlen=max(self.context, 1) + 1)

    @property
    def name(self) -> str:
        return f"{self.source}/{self.metric}"

    def update(self, ts: float, value: float) -> ScoredPoint | None:
        """Score the next point causally; None for a point not newer than the last one."""
        if self._last_ts is not None and ts <= self._last_ts:
            return None
        self._last_ts = ts
        score = float(self.detector.update(ts, value))
        before = [v for _, v in self._points][-self.context :]
        self._points.append((ts, value))
        window = tuple(list(self._points)[-self.context :])
        return ScoredPoint(ts, value, score, window, baseline_stats(before))

    def should_alert(self, point: ScoredPoint, threshold: float, cooldown_s: float) -> bool:
        """Whether the point opens an anomaly: over ``threshold`` and out of the cooldown.

        The cooldown runs in sample time from the last alert, so a spike over several samples
        (and the drop back after it) is one anomaly, not one per sample.
        """
        if point.score < threshold:
            return False
        if self._last_alert is not None and point.ts - self._last_alert < cooldown_s:
            return False
        self._last_alert = point.ts
        return True
