"""The anomaly monitor: ``kind=sample`` records in, ``kind=anomaly`` records out.

:class:`AnomalyMonitor` is the logic without Kafka: every checked sample updates the worker's
series and, when a window of sample time closes, the fleet's (see
:mod:`lakecast.monitoring.series`); each new point is scored by its own causal detector, and a
score at or over the threshold, outside the series' cooldown, becomes an anomaly record that
carries the value, the score, the detector and the window that explains it (the recent points
and their baseline). :class:`MonitorService` runs it on the ``metrics`` topic (the loop of
:mod:`lakecast.monitoring.metrics_topic`): it skips (logs and counts) records that break the
contract and keeps going, hands ``kind=quality``, ``drift`` and ``staleness`` records and the
samples' non-finite counts to their watches (each in its own module), writes anomalies back to
the same topic, sets the Prometheus gauges and stops cleanly when its stop event is set.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord

from lakecast.config import KafkaSettings, QualitySettings, StalenessSettings
from lakecast.errors import ConfigError, DataError, InvalidRecordError
from lakecast.kafka.timestamps import to_iso
from lakecast.monitoring.detectors import DEFAULT_DETECTOR, Detector, make_detector
from lakecast.monitoring.drift.watch import DriftWatch
from lakecast.monitoring.metrics_topic import (
    MetricsTopicService,
    read_metric_record,
    report_bad_record,
    send_metric_record,
)
from lakecast.monitoring.nonfinite import NonFiniteWatch
from lakecast.monitoring.prometheus import ANOMALIES, ANOMALY_SCORE, EVICTED_SERIES, SERIES_VALUE
from lakecast.monitoring.series import (
    FLEET_SOURCE,
    METRICS,
    FleetAggregator,
    MonitoredSample,
    ScoredPoint,
    SeriesState,
    parse_sample,
)
from lakecast.monitoring.staleness import STALENESS_KIND, StalenessProbe, StalenessWatch
from lakecast.quality.alerts import QualityWatch

log = logging.getLogger(__name__)

ANOMALY_KIND = "anomaly"

DIRECTIONS = ("high", "low", "both")
# Which side of normal is news, by metric: a latency, lag or DLQ rate below its baseline is
# good news, and an alert on it would also start the series' cooldown and swallow the bad
# spike that may follow.
DEFAULT_ALERT_ON: dict[str, str] = {
    "records_in_per_s": "both",
    "latency_p99_ms": "high",
    "lag": "high",
    "cpu_percent": "both",
    "dlq_rate": "high",
    "score_mean": "both",
}


@dataclass(frozen=True)
class MonitorConfig:
    """How the monitor scores and when it speaks.

    Attributes:
        detector: a name of :data:`lakecast.monitoring.detectors.DETECTORS`.
        detector_params: overrides of that detector's defaults.
        threshold: a score at or over it is an anomaly.
        cooldown_s: after an anomaly, the same series stays quiet this long (sample time).
        context: recent points shown in an anomaly record (and behind its baseline).
        fleet_window_s: the window of sample time the fleet's series is aggregated over;
            at least the workers' sample interval.
        fleet_max_age_s: a worker's latest sample older than this leaves the fleet.
        metrics: the figures watched (a subset of :data:`METRICS`).
        per_worker: whether each worker gets its own series, besides the fleet's.
        alert_on: per metric, which side of the baseline is an anomaly (``high``, ``low`` or
            ``both``); overrides :data:`DEFAULT_ALERT_ON`. A point on the other side is
            scored but neither alerts nor starts the cooldown.
        source: the monitor's id (the ``monitor`` field of its records).
        series_idle_s: a series with no point for this long (the monitor's own clock, not
            sample time, which a forged record could set) is forgotten, detector and gauges.
        max_series: the most series kept; a new one beyond it evicts the longest idle. Forged
            or restarted sources (each a new worker id) would otherwise grow memory forever.
    """

    detector: str = DEFAULT_DETECTOR
    detector_params: Mapping[str, Any] = field(default_factory=dict)
    threshold: float = 0.99
    cooldown_s: float = 60.0
    context: int = 30
    fleet_window_s: float = 5.0
    fleet_max_age_s: float = 15.0
    metrics: tuple[str, ...] = tuple(METRICS)
    per_worker: bool = True
    alert_on: Mapping[str, str] = field(default_factory=dict)
    source: str = "monitor"
    series_idle_s: float = 900.0
    max_series: int = 2_000

    def __post_init__(self) -> None:
        unknown = sorted((set(self.metrics) | set(self.alert_on)) - set(METRICS))
        if unknown:
            msg = f"monitor config: unknown metrics {unknown}; known are {sorted(METRICS)}"
            raise ConfigError(msg)
        wrong = {m: d for m, d in self.alert_on.items() if d not in DIRECTIONS}
        if wrong:
            msg = f"monitor config: alert_on {wrong}: a direction is one of {list(DIRECTIONS)}"
            raise ConfigError(msg)
        if self.series_idle_s <= 0 or self.max_series < 1:
            msg = (
                "monitor config: series_idle_s must be > 0 and max_series >= 1, got "
                f"{self.series_idle_s} and {self.max_series}"
            )
            raise ConfigError(msg)
        if not 0.0 < self.threshold <= 1.0:
            msg = f"monitor config: threshold must be in (0, 1], got {self.threshold}"
            raise ConfigError(msg)
        # Fail at start, not on the first sample, when the detector name or a param is wrong.
        try:
            make_detector(self.detector, **dict(self.detector_params))
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            params = dict(self.detector_params)
            msg = f"monitor config: detector {self.detector!r} with {params}: {exc}"
            raise ConfigError(msg) from exc

    def alerts_on(self, metric: str, direction: str | None) -> bool:
        """Whether a point on ``direction``'s side of the baseline may open an anomaly."""
        wanted = self.alert_on.get(metric, DEFAULT_ALERT_ON[metric])
        return wanted == "both" or direction is None or direction == wanted


def direction_of(point: ScoredPoint) -> str | None:
    """``high`` or ``low`` against the baseline's median; None before there is a baseline."""
    median = point.baseline.get("median")
    if median is None:
        return None
    return "high" if point.value >= median else "low"


class AnomalyMonitor:
    """Per-series causal scoring and anomaly records, with no Kafka in sight."""

    def __init__(
        self,
        config: MonitorConfig,
        detector_factory: Callable[[], Detector] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._factory = detector_factory or (
            lambda: make_detector(config.detector, **dict(config.detector_params))
        )
        self._clock = clock
        # Least recently updated first, with when each was last updated (the clock's time).
        self._series: OrderedDict[tuple[str, str], tuple[SeriesState, float]] = OrderedDict()
        self.fleet = FleetAggregator(config.fleet_window_s, config.fleet_max_age_s)

    def __len__(self) -> int:
        return len(self._series)

    @property
    def watched(self) -> set[tuple[str, str]]:
        """The (source, metric) series kept now."""
        return set(self._series)

    def series(self, source: str, metric: str) -> SeriesState:
        """The series of ``(source, metric)``, created on first use; marks it as updated."""
        key = (source, metric)
        now = self._clock()
        found = self._series.pop(key, None)
        self._evict(now, room_for=1)
        if found is None:
            state = SeriesState(source, metric, self._factory(), self.config.context)
        else:
            state = found[0]
        self._series[key] = (state, now)
        return state

    def _evict(self, now: float, room_for: int = 0) -> None:
        """Forget the series idle past ``series_idle_s``, and the longest idle beyond the cap."""
        idle_before = now - self.config.series_idle_s
        while self._series:
            state, seen = next(iter(self._series.values()))
            if seen > idle_before and len(self._series) + room_for <= self.config.max_series:
                return
            self._series.popitem(last=False)
            for gauge in (ANOMALY_SCORE, SERIES_VALUE):
                with contextlib.suppress(KeyError):  # never scored: no gauge child
                    gauge.remove(state.name)
            EVICTED_SERIES.inc()
            log.info("series %s forgotten (idle or over max_series)", state.name)

    def observe(self, sample: MonitoredSample) -> list[dict[str, Any]]:
        """Score a worker sample (and any fleet window it closes); returns anomaly records."""
        anomalies: list[dict[str, Any]] = []
        for point in self.fleet.add(sample):
            anomalies += self._score(FLEET_SOURCE, point.ts, point.values, workers=point.workers)
        if self.config.per_worker:
            anomalies += self._score(sample.source, sample.ts, sample.values)
        return anomalies

    def close_fleet_window(self) -> list[dict[str, Any]]:
        """Close the fleet's open window (when samples stopped); returns anomaly records."""
        anomalies: list[dict[str, Any]] = []
        for point in self.fleet.close():
            anomalies += self._score(FLEET_SOURCE, point.ts, point.values, workers=point.workers)
        return anomalies

    def _score(
        self,
        source: str,
        ts: float,
        values: Mapping[str, float | None],
        workers: int | None = None,
    ) -> list[dict[str, Any]]:
        out = []
        for metric in self.config.metrics:
            value = values.get(metric)
            if value is None:
                continue
            state = self.series(source, metric)
            point = state.update(ts, value)
            if point is None:
                continue
            ANOMALY_SCORE.labels(series=state.name).set(point.score)
            SERIES_VALUE.labels(series=state.name).set(point.value)
            if not self.config.alerts_on(metric, direction_of(point)):
                continue
            if state.should_alert(point, self.config.threshold, self.config.cooldown_s):
                out.append(self._anomaly(source, metric, point, workers))
        return out

    def _anomaly(
        self, source: str, metric: str, point: ScoredPoint, workers: int | None
    ) -> dict[str, Any]:
        return {
            "kind": ANOMALY_KIND,
            "source": source,
            "ts": to_iso(point.ts),
            "metric": metric,
            "series": f"{source}/{metric}",
            "scope": "fleet" if source == FLEET_SOURCE else "worker",
            "workers": workers,
            "value": point.value,
            "score": point.score,
            "threshold": self.config.threshold,
            "direction": direction_of(point),
            "detector": self.config.detector,
            "monitor": self.config.source,
            "window": {
                "ts": [to_iso(t) for t, _ in point.window],
                "values": [v for _, v in point.window],
            },
            "baseline": dict(point.baseline),
        }


class MonitorService(MetricsTopicService):
    """The monitor on the ``metrics`` topic: samples in, anomalies back to the same topic.

    Args:
        kafka: bootstrap and security (topics are explicit, see below).
        metrics_topic: the topic samples come from and anomalies go to.
        config: scoring settings.
        group_id: the monitor's consumer group (offsets committed after each poll).
        from_beginning: with no committed offset, start at the earliest record (else latest).
        poll_timeout_ms: how long one poll waits; also how often the stop event is checked.
        quality: thresholds of the alerts on ``kind=quality`` records (config ``quality:``).
        staleness: age limits of the alerts on ``kind=staleness`` records (``staleness:``).
        staleness_probe: when given, the monitor writes those records itself, every
            ``staleness.check_interval_s`` (the registry and the entity snapshot it reads).
    """

    name = "monitor"

    def __init__(
        self,
        kafka: KafkaSettings,
        metrics_topic: str,
        config: MonitorConfig | None = None,
        *,
        group_id: str = "lakecast-monitor",
        from_beginning: bool = False,
        poll_timeout_ms: int = 500,
        quality: QualitySettings | None = None,
        staleness: StalenessSettings | None = None,
        staleness_probe: StalenessProbe | None = None,
    ) -> None:
        self.config = config or MonitorConfig()
        super().__init__(
            kafka,
            metrics_topic,
            group_id=group_id,
            client_id=f"lakecast-{self.config.source}",
            from_beginning=from_beginning,
            poll_timeout_ms=poll_timeout_ms,
        )
        # The watches of issue 18, each in its own module: kind=quality records (alerts on
        # drops against the holdout), kind=drift (one per drifted feature), kind=staleness,
        # and the samples' non-finite score counts.
        self.quality = QualityWatch(quality, source=self.config.source)
        self.drift = DriftWatch(source=self.config.source)
        self.staleness = StalenessWatch(staleness, source=self.config.source)
        self.staleness_probe = staleness_probe
        self.nonfinite = NonFiniteWatch(source=self.config.source)
        self._watches: dict[str, Callable[[Mapping[str, Any]], list[dict[str, Any]]]] = {
            "quality": self.quality.observe,
            "drift": self.drift.observe,
            STALENESS_KIND: self.staleness.observe,
        }
        self.monitor = AnomalyMonitor(self.config)
        # The latest anomalies written, for tests and a status line; bounded for long runs.
        self.anomalies: deque[dict[str, Any]] = deque(maxlen=1000)
        self._pending: list[dict[str, Any]] = []  # found in this poll, written before its commit
        self._last_sample = time.monotonic()

    def on_start(self) -> None:
        log.info(
            "monitor started on %s (detector %s, threshold %g)",
            self.topic,
            self.config.detector,
            self.config.threshold,
            extra={"topic": self.topic, "group": self.group_id, "detector": self.config.detector},
        )
        self._last_sample = time.monotonic()

    def on_message(self, message: ConsumerRecord) -> None:
        found = self.handle(message)
        if found is not None:
            self._pending += found
            self._last_sample = time.monotonic()

    def before_commit(self, producer: KafkaProducer) -> None:
        """Staleness records when due, the fleet's window once samples stopped, the anomalies."""
        if self.staleness_probe is not None and self.staleness_probe.due():
            for record in self.staleness_probe.records():
                send_metric_record(producer, self.topic, STALENESS_KIND, record)
        idle = time.monotonic() - self._last_sample
        if self.monitor.fleet.has_open_window and idle > self.config.fleet_window_s:
            self._pending += self.monitor.close_fleet_window()
        anomalies, self._pending = self._pending, []
        self._write(producer, anomalies)

    def handle(self, message: ConsumerRecord) -> list[dict[str, Any]] | None:
        """One message: anomaly records for a good sample or watched record, else None."""
        record = read_metric_record(message, self.name, self.stats)
        if record is None:
            return None
        watch = self._watches.get(record["kind"])
        if watch is not None:
            try:
                return watch(record)
            except InvalidRecordError as exc:
                report_bad_record(message, self.name, self.stats, exc)
                return None
        if record["kind"] != "sample":
            return None
        try:
            sample = parse_sample(record)
            nonfinite = self.nonfinite.observe(record)
        except (InvalidRecordError, DataError) as exc:
            report_bad_record(message, self.name, self.stats, exc)
            return None
        self.stats.samples += 1
        return nonfinite + self.monitor.observe(sample)

    def _write(self, producer: KafkaProducer, anomalies: list[dict[str, Any]]) -> None:
        for anomaly in anomalies:
            send_metric_record(producer, self.topic, ANOMALY_KIND, anomaly)
            ANOMALIES.labels(metric=anomaly["metric"]).inc()
            self.stats.written += 1
            self.anomalies.append(anomaly)
            log.warning(
                "anomaly on %s: value %.4g, score %.3f",
                anomaly["series"],
                anomaly["value"],
                anomaly["score"],
                extra={k: anomaly[k] for k in ("series", "metric", "value", "score", "ts")},
            )
        if anomalies:
            producer.flush(timeout=10)
