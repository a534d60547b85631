"""What the canary analysis judges: per-variant raw values from the workers' samples.

Each worker's sample carries, per variant, its record and error counts and bounded lists of
raw values (end-to-end latency, model latency, scores); see
:mod:`lakecast.monitoring.samples`. A :class:`SampleBook` keeps the recent samples of one
model and pools, for a window of sample time, each variant's values into the arrays
:func:`lakecast.rollout.analysis.analyse_canary` compares. :class:`TopicTail` reads a topic
from a point in time without a consumer group (the controller owns no partitions and
commits nothing).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from lakecast.config import KafkaSettings
from lakecast.errors import InvalidRecordError, StreamError
from lakecast.kafka.serde import decode_metric

log = logging.getLogger(__name__)

# The metric names the controller's default analysis judges (see controller.DEFAULT_METRICS).
LATENCY = "latency_ms"
MODEL_LATENCY = "model_latency_ms"
ERROR_RATE = "error_rate"
SCORE = "score"
# Per-record error indicators are capped so one busy window cannot make a huge array; the
# cap keeps the error share exact to within 1 / MAX_INDICATORS.
MAX_INDICATORS = 5_000


@dataclass
class VariantEvidence:
    """One variant's pooled values over a window."""

    records: int = 0
    errors: int = 0
    samples: int = 0
    # Each worker's largest per-sample count of distinct users. A sum over samples would
    # count a user active in ten samples ten times, and the split test would take those
    # repeats for independent users (a false sample-ratio mismatch with few users).
    users_by_source: dict[str, int] = field(default_factory=dict)
    latency_ms: list[float] = field(default_factory=list)
    model_latency_ms: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    @property
    def users(self) -> int:
        """Distinct users in the window, a lower bound: events are keyed by user, so one
        user's events go to one worker, and the workers' counts add up."""
        return sum(self.users_by_source.values())

    def add(self, stats: Mapping[str, Any], source: str = "") -> None:
        self.samples += 1
        self.records += int(stats.get("records") or 0)
        self.errors += int(stats.get("errors") or 0)
        users = int(stats.get("users") or 0)
        self.users_by_source[source] = max(users, self.users_by_source.get(source, 0))
        self.latency_ms.extend(_numbers(stats.get("latency_ms")))
        self.model_latency_ms.extend(_numbers(stats.get("model_latency_ms")))
        self.scores.extend(_numbers(stats.get("scores")))

    def error_indicators(self) -> np.ndarray:
        """One 0/1 value per record (1: an error), scaled down to at most MAX_INDICATORS."""
        total = max(self.records, self.errors)  # errors are records too
        if total <= 0:
            return np.zeros(0)
        size = min(total, MAX_INDICATORS)
        ones = round(size * min(self.errors, total) / total)
        return np.concatenate([np.zeros(size - ones), np.ones(ones)])

    def arrays(self) -> dict[str, np.ndarray]:
        """Metric name -> values, in the names of the controller's default metrics."""
        return {
            LATENCY: np.asarray(self.latency_ms, dtype=np.float64),
            MODEL_LATENCY: np.asarray(self.model_latency_ms, dtype=np.float64),
            ERROR_RATE: self.error_indicators(),
            SCORE: np.asarray(self.scores, dtype=np.float64),
        }


def _numbers(values: Any) -> list[float]:
    if not isinstance(values, list):
        return []
    return [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]


@dataclass(frozen=True)
class _Sample:
    ts: datetime
    source: str
    variants: Mapping[str, Any]


class SampleBook:
    """The recent ``kind=sample`` records of one model, pooled per variant on demand.

    Args:
        model: samples naming another model (``model.name``) are ignored; samples without a
            model name are kept (a worker serves one model).
        max_age: samples older than this (by sample time) are dropped.
    """

    def __init__(self, model: str, max_age: timedelta = timedelta(hours=2)) -> None:
        self.model = model
        self.max_age = max_age
        self._samples: deque[_Sample] = deque()
        self.ignored = 0

    def __len__(self) -> int:
        return len(self._samples)

    def add(self, record: Mapping[str, Any]) -> bool:
        """Keep a decoded metrics record if it is a sample of this model with variants."""
        if record.get("kind") != "sample":
            return False
        model = record.get("model")
        name = model.get("name") if isinstance(model, Mapping) else None
        variants = record.get("variants")
        ts = record.get("ts")
        if (name not in (None, self.model)) or not isinstance(variants, Mapping):
            self.ignored += 1
            return False
        if not isinstance(ts, datetime):
            self.ignored += 1
            return False
        self._samples.append(_Sample(ts, str(record.get("source", "")), variants))
        newest = max(self._samples[-1].ts, self._samples[0].ts)
        while self._samples and newest - self._samples[0].ts > self.max_age:
            self._samples.popleft()
        return True

    def window(self, since: datetime, until: datetime | None = None) -> dict[str, VariantEvidence]:
        """Variant name -> pooled values of the samples with ``since <= ts <= until``."""
        pooled: dict[str, VariantEvidence] = {}
        for sample in self._samples:
            if sample.ts < since or (until is not None and sample.ts > until):
                continue
            for name, stats in sample.variants.items():
                if isinstance(stats, Mapping):
                    pooled.setdefault(str(name), VariantEvidence()).add(stats, sample.source)
        return pooled


class TopicTail:
    """Reads every partition of one topic from a point in time, without a consumer group.

    Only committed records are read, as every consumer of our outputs does.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        *,
        start: datetime | None = None,
        client_id: str = "lakecast-rollout-controller",
    ) -> None:
        self.topic = topic
        try:
            self._consumer = KafkaConsumer(
                **settings.client_options(),
                group_id=None,
                client_id=client_id,
                enable_auto_commit=False,
                isolation_level="read_committed",
                request_timeout_ms=settings.request_timeout_ms,
                fetch_max_wait_ms=min(settings.fetch_max_wait_ms, 200),
            )
            partitions = self._consumer.partitions_for_topic(topic)
            if not partitions:
                msg = f"rollout controller: topic {topic!r} has no partitions (does it exist?)"
                raise StreamError(msg)
            assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
            self._consumer.assign(assigned)
            self._seek(assigned, start)
        except KafkaError as exc:
            where = settings.bootstrap_servers
            msg = f"rollout controller: read topic {topic!r} at {where}: {exc!r}"
            raise StreamError(msg) from exc

    def _seek(self, partitions: list[TopicPartition], start: datetime | None) -> None:
        if start is None:
            self._consumer.seek_to_beginning(*partitions)
            return
        millis = int(start.timestamp() * 1000)
        offsets = self._consumer.offsets_for_times(dict.fromkeys(partitions, millis))
        for partition in partitions:
            found = offsets.get(partition)
            if found is None:
                self._consumer.seek_to_end(partition)
            else:
                self._consumer.seek(partition, found.offset)

    def poll(self, timeout_ms: int = 200) -> list[bytes | None]:
        """The values of the records that arrived, in partition order."""
        try:
            batches = self._consumer.poll(timeout_ms=timeout_ms)
        except KafkaError as exc:
            msg = f"rollout controller: poll {self.topic!r}: {exc!r}"
            raise StreamError(msg) from exc
        return [record.value for records in batches.values() for record in records]

    def close(self) -> None:
        self._consumer.close()


def decode_metrics(values: Iterable[bytes | None]) -> list[dict[str, Any]]:
    """Decode ``metrics`` values; records that break the contract are logged and skipped."""
    decoded = []
    for value in values:
        try:
            decoded.append(decode_metric(value))
        except InvalidRecordError as exc:
            log.warning("rollout controller: skipping a bad metrics record: %s", exc)
    return decoded
