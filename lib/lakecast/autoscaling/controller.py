"""The stateful autoscaling controller: samples and anomalies in, :class:`ScalingDecision` out.

It holds what the pure rules of :mod:`lakecast.autoscaling.algorithm` cannot: each worker's
latest sample, the recommendations of the scale-down stabilisation window and the open
anomalies. It reads no topic and starts no process; the autoscaler service feeds it the
``metrics`` records and acts on its decisions, so that every rule here is testable with a
simulated clock.

Aggregation across workers (one sample per worker: its latest, if younger than
``windows.sample_max_age_s``):

* ``cpu_percent``: the mean over workers (HPA's average utilisation);
* ``records_in_per_s``: the sum;
* lag: per-partition reports (``lag`` as a ``{partition: lag}`` object) are deduplicated by
  partition, the newest report of a partition winning, because during a rebalance two workers
  can both report a partition; a plain number is the lag of that worker's own partitions and
  is added as it is (a consumer group assigns each partition to one member). A lag measured by
  the service for the whole group (``group_lag``, from the broker's committed offsets) wins
  over both, and is the only lag there is when no worker runs;
* partitions: given by the caller (the topic's partition count), else the partitions the
  workers report as assigned.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from prometheus_client import Gauge

from lakecast.autoscaling.algorithm import Observation, limit_step, recommend, stabilise
from lakecast.autoscaling.decision import ScalingDecision
from lakecast.autoscaling.policy import AutoscalePolicy
from lakecast.autoscaling.predictive import LoadForecaster
from lakecast.errors import DataError
from lakecast.kafka.timestamps import to_epoch

DESIRED_REPLICAS = Gauge(
    "lakecast_desired_replicas",
    "Replicas the autoscaler wants for a consumer group, after its window and step limits.",
    ["group"],
)
FORECAST_RECORDS_IN = Gauge(
    "lakecast_forecast_records_in_per_s",
    "The predictive policy's forecast peak of the group's arrival rate over its horizon.",
    ["group"],
)


def _number(value: object, source: object, name: str) -> float | None:
    """A sample's non-negative finite number, or None when absent."""
    if value is None:
        return None
    where = f"worker sample from {source!r}"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        msg = f"{where}: {name} must be a finite number, found {value!r}"
        raise DataError(msg)
    if value < 0:
        msg = f"{where}: {name} must not be negative, found {value!r}"
        raise DataError(msg)
    return float(value)


@dataclass(frozen=True)
class WorkerSample:
    """One worker's ``kind=sample`` record, reduced to what scaling needs."""

    source: str
    ts: float
    cpu_percent: float | None = None
    records_in_per_s: float | None = None
    lag: float | None = None
    partition_lags: Mapping[str, float] | None = None
    partitions: tuple[str, ...] = ()
    partition_count: int | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> WorkerSample:
        """Parse a sample record; partition ids are kept as strings (JSON object keys are).

        Raises:
            DataError: ``source`` or ``ts`` is missing, or a field has the wrong type.
        """
        source = record.get("source")
        if not isinstance(source, str) or not source:
            msg = f"worker sample: source must be a non-empty string, found {source!r}"
            raise DataError(msg)
        if "ts" not in record:
            msg = f"worker sample from {source!r}: field 'ts' is missing"
            raise DataError(msg)
        raw_lag = record.get("lag")
        lag: float | None = None
        partition_lags: dict[str, float] | None = None
        if isinstance(raw_lag, Mapping):
            partition_lags = {}
            for partition, value in raw_lag.items():
                number = _number(value, source, f"lag[{partition!r}]")
                if number is None:
                    msg = f"worker sample from {source!r}: lag of partition {partition!r} is null"
                    raise DataError(msg)
                partition_lags[str(partition)] = number
            lag = sum(partition_lags.values())
        else:
            lag = _number(raw_lag, source, "lag")
        assigned = record.get("partitions")
        if assigned is None:
            partitions: tuple[str, ...] = ()
            count = None
        elif isinstance(assigned, list | tuple):
            partitions = tuple(str(p) for p in assigned)
            count = len(set(partitions))
        elif isinstance(assigned, int) and not isinstance(assigned, bool) and assigned >= 0:
            partitions, count = (), assigned
        else:
            msg = (
                f"worker sample from {source!r}: partitions must be a list of partition ids "
                f"or a count, found {assigned!r}"
            )
            raise DataError(msg)
        return cls(
            source=source,
            ts=to_epoch(record["ts"]),
            cpu_percent=_number(record.get("cpu_percent"), source, "cpu_percent"),
            records_in_per_s=_number(record.get("records_in_per_s"), source, "records_in_per_s"),
            lag=lag,
            partition_lags=partition_lags,
            partitions=partitions,
            partition_count=count,
        )


@dataclass(frozen=True)
class Anomaly:
    """A ``kind=anomaly`` record from the monitor."""

    metric: str
    source: str
    score: float
    ts: float

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Anomaly:
        """Raises: DataError when ``metric`` or ``ts`` is missing or ``score`` is not a number."""
        metric = record.get("metric")
        if not isinstance(metric, str) or "ts" not in record:
            msg = f"anomaly record: needs a string metric and a ts, found {dict(record)!r}"
            raise DataError(msg)
        score = record.get("score", 0.0)
        if isinstance(score, bool) or not isinstance(score, int | float):
            msg = f"anomaly record on {metric!r}: score must be a number, found {score!r}"
            raise DataError(msg)
        return cls(metric, str(record.get("source", "")), float(score), to_epoch(record["ts"]))


@dataclass
class ScalingController:
    """Decides the replica count of one consumer group, one evaluation at a time.

    Args:
        policy: the autoscaling policy.
        group: the consumer group (the gauge's label).
        source: the id written in each decision.
        partitions: the partition count of the consumed topics, if known up front.
    """

    policy: AutoscalePolicy
    group: str = "inference"
    source: str = "autoscaler"
    partitions: int | None = None
    _latest: dict[str, WorkerSample] = field(default_factory=dict, init=False, repr=False)
    _anomalies: list[Anomaly] = field(default_factory=list, init=False, repr=False)
    _history: deque[tuple[float, int]] = field(default_factory=deque, init=False, repr=False)
    _last: ScalingDecision | None = field(default=None, init=False, repr=False)
    _forecaster: LoadForecaster | None = field(default=None, init=False, repr=False)
    _last_lag: tuple[float, float] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.policy.predictive is not None:
            self._forecaster = LoadForecaster(self.policy.predictive)

    @property
    def last_decision(self) -> ScalingDecision | None:
        return self._last

    def observe(self, record: Mapping[str, Any]) -> None:
        """Take one ``metrics`` record; kinds other than sample and anomaly are ignored."""
        kind = record.get("kind")
        if kind == "sample":
            self.observe_sample(record)
        elif kind == "anomaly":
            self.observe_anomaly(record)

    def observe_sample(self, record: Mapping[str, Any] | WorkerSample) -> None:
        """Keep the worker's sample if it is its newest (out-of-order samples are dropped)."""
        sample = record if isinstance(record, WorkerSample) else WorkerSample.from_record(record)
        known = self._latest.get(sample.source)
        if known is None or sample.ts >= known.ts:
            self._latest[sample.source] = sample

    def observe_anomaly(self, record: Mapping[str, Any] | Anomaly) -> None:
        """Remember an anomaly if it is on a metric that blocks scale-down."""
        anomaly = record if isinstance(record, Anomaly) else Anomaly.from_record(record)
        if anomaly.metric in self.policy.anomalies.metrics:
            self._anomalies.append(anomaly)

    def open_anomalies(self, now: float) -> list[Anomaly]:
        """Blocking anomalies raised within ``anomalies.hold_s`` before ``now``."""
        hold = self.policy.anomalies.hold_s
        self._anomalies = [a for a in self._anomalies if a.ts + hold > now]
        return [a for a in self._anomalies if a.ts <= now]

    def fresh_samples(self, now: float) -> list[WorkerSample]:
        """Each worker's latest sample, if younger than ``windows.sample_max_age_s``."""
        max_age = self.policy.windows.sample_max_age_s
        self._latest = {s: x for s, x in self._latest.items() if now - x.ts < max_age}
        return sorted(self._latest.values(), key=lambda x: x.source)

    def observation(
        self,
        now: float,
        current: int,
        *,
        partitions: int | None = None,
        group_lag: float | None = None,
    ) -> Observation:
        """Aggregate the fresh samples into one :class:`Observation` (see the module docstring)."""
        samples = self.fresh_samples(now)
        cpus = [s.cpu_percent for s in samples if s.cpu_percent is not None]
        rates = [s.records_in_per_s for s in samples if s.records_in_per_s is not None]
        lag = group_lag if group_lag is not None else _total_lag(samples)
        count = partitions or self.partitions or _assigned_partitions(samples)
        return Observation(
            current=current,
            cpu_percent=sum(cpus) / len(cpus) if cpus else None,
            records_in_per_s=sum(rates) if rates else None,
            total_lag=lag,
            partitions=count,
        )

    def due(self, now: float) -> bool:
        """Whether ``windows.evaluation_interval_s`` has passed since the last decision."""
        interval = self.policy.windows.evaluation_interval_s
        return self._last is None or now - self._last.ts >= interval

    def evaluate(
        self,
        now: float,
        current: int | None = None,
        *,
        partitions: int | None = None,
        group_lag: float | None = None,
    ) -> ScalingDecision:
        """Decide the replica count at ``now`` and set ``lakecast_desired_replicas``.

        Args:
            now: seconds since the epoch (the service's clock, or a simulated one).
            current: replicas running now; default: the last decision's desired count, or
                the number of workers with fresh samples.
            partitions: partition count of the consumed topics (caps the lag rule).
            group_lag: the group's total lag measured from the broker, if the caller has it.
        """
        if current is None:
            current = self._last.desired if self._last else len(self.fresh_samples(now))
        if current < 0:
            msg = f"autoscaler {self.group}: current replicas must not be negative, got {current}"
            raise ValueError(msg)
        policy = self.policy
        obs = self.observation(now, current, partitions=partitions, group_lag=group_lag)
        if self._forecaster is not None:
            obs = self._with_forecast(now, obs, self._forecaster)
        rec = recommend(policy, obs)
        window_s = policy.windows.scale_down_stabilization_s
        if not self._history:
            # A controller that just started has no window yet: count the running replicas
            # as the first recommendation, so a restart never scales down at once.
            self._history.append((now, current))
        self._history.append((now, rec.replicas))
        while self._history and self._history[0][0] <= now - window_s:
            self._history.popleft()
        reasons = [rec.reason]
        desired = stabilise(current, rec.replicas, (r for _, r in self._history))
        if desired > rec.replicas:
            reasons.append(
                f"scale-down to {rec.replicas} held at {desired}: the highest recommendation "
                f"in the last {window_s:g} s stabilisation window"
            )
        if desired < current:
            blocking = self.open_anomalies(now)
            if blocking:
                worst = max(blocking, key=lambda a: a.score)
                reasons.append(
                    f"scale-down blocked: {len(blocking)} open anomaly(ies), e.g. {worst.metric} "
                    f"from {worst.source or '?'} (score {worst.score:.3g}) within "
                    f"{policy.anomalies.hold_s:g} s"
                )
                desired = current
        limited = limit_step(current, desired, policy.max_step)
        if limited != desired:
            reasons.append(f"{desired} limited by max_step {policy.max_step} to {limited}")
        decision = ScalingDecision(
            current=current,
            desired=limited,
            metric=rec.metric,
            reason="; ".join(reasons),
            ts=now,
            source=self.source,
            value=rec.value,
            target=rec.target,
            recommended=rec.replicas,
        )
        DESIRED_REPLICAS.labels(group=self.group).set(decision.desired)
        self._last = decision
        return decision

    def _with_forecast(
        self, now: float, obs: Observation, forecaster: LoadForecaster
    ) -> Observation:
        """Feed the arrival rate to the forecaster; the observation with its forecast peak.

        The arrival rate is what the workers consumed plus the growth of the lag since the last
        evaluation: a saturated or stalled group consumes less than arrives.
        """
        if obs.records_in_per_s is None and obs.current > 0:
            return obs
        arrival = obs.records_in_per_s or 0.0
        if obs.total_lag is not None:
            if self._last_lag is not None and now > self._last_lag[0]:
                arrival += (obs.total_lag - self._last_lag[1]) / (now - self._last_lag[0])
            self._last_lag = (now, obs.total_lag)
        forecaster.observe(now, max(arrival, 0.0))
        peak = forecaster.peak(now)
        if peak is not None:
            FORECAST_RECORDS_IN.labels(group=self.group).set(peak)
        return replace(obs, forecast_records_in_per_s=peak)


def _total_lag(samples: list[WorkerSample]) -> float | None:
    by_partition: dict[str, tuple[float, float]] = {}
    plain = 0.0
    seen = False
    for sample in samples:
        if sample.partition_lags is not None:
            seen = True
            for partition, lag in sample.partition_lags.items():
                known = by_partition.get(partition)
                if known is None or sample.ts >= known[0]:
                    by_partition[partition] = (sample.ts, lag)
        elif sample.lag is not None:
            seen = True
            plain += sample.lag
    if not seen:
        return None
    return plain + sum(lag for _, lag in by_partition.values())


def _assigned_partitions(samples: list[WorkerSample]) -> int | None:
    ids = {p for s in samples for p in s.partitions}
    counted = sum(s.partition_count or 0 for s in samples if not s.partitions)
    total = len(ids) + counted
    return total or None
