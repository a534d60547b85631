"""The anomaly monitor: ``kind=sample`` records in, ``kind=anomaly`` records out.

:class:`AnomalyMonitor` is the logic without Kafka: every checked sample updates the worker's
series and, when a window of sample time closes, the fleet's (see
:mod:`lakecast.monitoring.series`); each new point is scored by its own causal detector, and a
score at or over the threshold, outside the series' cooldown, becomes an anomaly record that
carries the value, the score, the detector and the window that explains it (the recent points
and their baseline). :class:`MonitorService` runs it on the ``metrics`` topic: it skips (logs
and counts) records that break the contract and keeps going, writes anomalies back to the same
topic, sets the Prometheus gauges and stops cleanly when its stop event is set.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    KafkaError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)

from lakecast.config import KafkaSettings, QualitySettings, StalenessSettings
from lakecast.errors import ConfigError, DataError, InvalidRecordError, StreamError
from lakecast.kafka.clients import await_topics, build_consumer, build_producer
from lakecast.kafka.serde import decode_metric, encode_key, encode_metric
from lakecast.kafka.timestamps import to_iso
from lakecast.monitoring.detectors import DEFAULT_DETECTOR, Detector, make_detector
from lakecast.monitoring.drift.watch import DriftWatch
from lakecast.monitoring.nonfinite import NonFiniteWatch
from lakecast.monitoring.prometheus import (
    ANOMALIES,
    ANOMALY_SCORE,
    BAD_RECORDS,
    EVICTED_SERIES,
    METRICS_RECORDS,
    SERIES_VALUE,
)
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

# A commit refused because the group moved on: the next poll rejoins (not retriable as such).
GROUP_MOVED_ERRORS = (
    CommitFailedError,
    RebalanceInProgressError,
    IllegalGenerationError,
    UnknownMemberIdError,
)

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


@dataclass
class ServiceStats:
    """What a metrics-topic service has read so far (tests and logs read it)."""

    records: int = 0
    samples: int = 0
    bad_records: int = 0
    written: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


def subscribe_when_ready(consumer: KafkaConsumer, topic: str, timeout_s: float = 30.0) -> None:
    """Subscribe once the consumer's metadata knows ``topic`` (see :func:`await_topics`).

    Raises:
        StreamError: the topic has no partitions after ``timeout_s`` (it does not exist).
    """
    if not await_topics(consumer, [topic], timeout_s):
        msg = f"subscribe to {topic!r}: the topic has no partitions after {timeout_s:g} s"
        raise StreamError(msg)
    consumer.subscribe([topic])


def commit_read(consumer: KafkaConsumer, service: str) -> bool:
    """Commit what a metrics-topic service has read; a commit the group refuses is not fatal.

    A commit meets a rebalance (``RebalanceInProgressError``, ``CommitFailedError``: a fresh
    broker, a member joining) or a coordinator moving: the next ``poll`` rejoins, and the
    records since the last commit are read again (at least once, as these services are).
    Seen: a monitor on a fresh broker exited about a second after starting on its first commit.
    """
    try:
        consumer.commit()
    except KafkaError as exc:
        if not (isinstance(exc, GROUP_MOVED_ERRORS) or exc.retriable):
            raise
        log.warning("%s: commit refused, reading on (%r)", service, exc)
        return False
    return True


def read_metric_record(
    message: ConsumerRecord, service: str, stats: ServiceStats
) -> dict[str, Any] | None:
    """Decode a metrics-topic message; a bad one is logged with its offset, counted, None."""
    stats.records += 1
    try:
        record = decode_metric(message.value)
    except InvalidRecordError as exc:
        report_bad_record(message, service, stats, exc)
        return None
    kind = str(record["kind"])
    stats.by_kind[kind] = stats.by_kind.get(kind, 0) + 1
    METRICS_RECORDS.labels(service=service, kind=kind).inc()
    return record


def report_bad_record(
    message: ConsumerRecord, service: str, stats: ServiceStats, error: Exception
) -> None:
    """Log (JSON, with topic, partition, offset and field) and count a skipped record."""
    stats.bad_records += 1
    BAD_RECORDS.labels(service=service).inc()
    log.error(
        "skipped bad record at %s[%d]@%d: %s",
        message.topic,
        message.partition,
        message.offset,
        error,
        extra={
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "field": getattr(error, "field", None),
            "error": str(error),
        },
    )


class MonitorService:
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
        self.kafka = kafka
        self.topic = metrics_topic
        self.config = config or MonitorConfig()
        # kind=quality records: gauges, and alerts on drops against the holdout (issue 18).
        self.quality = QualityWatch(quality, source=self.config.source)
        # kind=drift records: gauges, and an alert per drifted feature (issue 18).
        self.drift = DriftWatch(source=self.config.source)
        # kind=staleness records and the samples' non-finite score counts (issue 18).
        self.staleness = StalenessWatch(staleness, source=self.config.source)
        self.staleness_probe = staleness_probe
        self.nonfinite = NonFiniteWatch(source=self.config.source)
        self.monitor = AnomalyMonitor(self.config)
        self.group_id = group_id
        self.from_beginning = from_beginning
        self.poll_timeout_ms = poll_timeout_ms
        self.stats = ServiceStats()
        # The latest anomalies written, for tests and a status line; bounded for long runs.
        self.anomalies: deque[dict[str, Any]] = deque(maxlen=1000)

    def run(self, stop: threading.Event) -> ServiceStats:
        """Consume until ``stop`` is set; then commit, close the consumer and the producer."""
        consumer = build_consumer(
            self.kafka,
            group_id=self.group_id,
            client_id=f"lakecast-{self.config.source}",
            auto_offset_reset="earliest" if self.from_beginning else "latest",
        )
        producer = build_producer(
            self.kafka, mode="at_least_once", client_id=f"lakecast-{self.config.source}"
        )
        try:
            subscribe_when_ready(consumer, self.topic)
        except StreamError:
            consumer.close()
            producer.close()
            raise
        log.info(
            "monitor started on %s (detector %s, threshold %g)",
            self.topic,
            self.config.detector,
            self.config.threshold,
            extra={"topic": self.topic, "group": self.group_id, "detector": self.config.detector},
        )
        last_sample = time.monotonic()
        try:
            while not stop.is_set():
                batches = consumer.poll(timeout_ms=self.poll_timeout_ms)
                anomalies: list[dict[str, Any]] = []
                for messages in batches.values():
                    for message in messages:
                        found = self.handle(message)
                        if found is not None:
                            anomalies += found
                            last_sample = time.monotonic()
                if self.staleness_probe is not None and self.staleness_probe.due():
                    self._send_staleness(producer)
                idle = time.monotonic() - last_sample
                if self.monitor.fleet.has_open_window and idle > self.config.fleet_window_s:
                    anomalies += self.monitor.close_fleet_window()
                self._write(producer, anomalies)
                if batches:
                    commit_read(consumer, self.name)
        finally:
            producer.flush(timeout=10)
            producer.close(timeout=10)
            consumer.close()
            log.info("monitor stopped", extra={"stats": vars(self.stats)})
        return self.stats

    def handle(self, message: ConsumerRecord) -> list[dict[str, Any]] | None:
        """One message: anomaly records for a good sample or quality record, else None."""
        record = read_metric_record(message, self.name, self.stats)
        if record is not None and record["kind"] == "quality":
            try:
                return self.quality.observe(record)
            except InvalidRecordError as exc:
                report_bad_record(message, self.name, self.stats, exc)
                return None
        if record is not None and record["kind"] == "drift":
            try:
                return self.drift.observe(record)
            except InvalidRecordError as exc:
                report_bad_record(message, self.name, self.stats, exc)
                return None
        if record is not None and record["kind"] == STALENESS_KIND:
            try:
                return self.staleness.observe(record)
            except InvalidRecordError as exc:
                report_bad_record(message, self.name, self.stats, exc)
                return None
        if record is None or record["kind"] != "sample":
            return None
        try:
            sample = parse_sample(record)
            nonfinite = self.nonfinite.observe(record)
        except (InvalidRecordError, DataError) as exc:
            report_bad_record(message, self.name, self.stats, exc)
            return None
        self.stats.samples += 1
        return nonfinite + self.monitor.observe(sample)

    def _send_staleness(self, producer: KafkaProducer) -> None:
        """The probe's records to the topic; read back, they set the gauges and alert."""
        for record in self.staleness_probe.records() if self.staleness_probe else []:
            fields = {k: v for k, v in record.items() if k not in {"kind", "source", "ts"}}
            ts = datetime.fromisoformat(record["ts"]).astimezone(UTC)
            value = encode_metric(STALENESS_KIND, record["source"], ts, fields)
            producer.send(self.topic, key=encode_key(record["source"]), value=value)

    def _write(self, producer: KafkaProducer, anomalies: list[dict[str, Any]]) -> None:
        for anomaly in anomalies:
            fields = {k: v for k, v in anomaly.items() if k not in {"kind", "source", "ts"}}
            ts = datetime.fromisoformat(anomaly["ts"]).astimezone(UTC)
            value = encode_metric(ANOMALY_KIND, anomaly["source"], ts, fields)
            producer.send(self.topic, key=encode_key(anomaly["source"]), value=value)
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
