"""The decision rules of the autoscaler, as pure functions of one observation.

Two families of rules recommend a replica count, and the largest recommendation wins, as in
the Kubernetes HPA with several metrics:

* the utilisation policies (``scale_up_policy`` / ``scale_down_policy``): the HPA rule
  ``ceil(current * value / target)``, with no change while ``|value / target - 1| <= tolerance``.
  Scale-up fires above the up target, scale-down below the down target; with equal targets this
  is exactly the HPA, with a lower down target the gap between them is a band that holds;
* the consumer lag (KEDA's Kafka scaler): ``ceil(total_lag / lag_threshold)``, at most one
  replica per partition, since a consumer group leaves extra members idle;
* with a ``predictive`` section and a forecast, ``ceil(forecast peak / records_per_replica)``
  in place of the utilisation policies (:mod:`lakecast.autoscaling.predictive`).

Then the bounds: ``[min_replicas, max_replicas]``, scale to zero when the group is idle and
``min_replicas`` is 0, and activation (0 -> 1 or more) when the lag exceeds the activation
threshold. What happens over time (stabilisation window, step limit, anomaly hold) is in
:mod:`lakecast.autoscaling.controller`; :func:`stabilise` and :func:`limit_step` are its pure parts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

from lakecast.autoscaling.policy import AutoscalePolicy, MetricType, ScalePolicy

# Float noise must not turn an exact 3.0 into 4 replicas, nor 77 / 70 into "beyond 10 %".
_EPSILON = 1e-9


@dataclass(frozen=True)
class Observation:
    """The consumer group at one evaluation, aggregated over its workers.

    Attributes:
        current: replicas running now.
        cpu_percent: average CPU of the workers, 0-100 per process; None when unknown.
        records_in_per_s: records consumed per second by all workers together.
        total_lag: consumer lag summed over the partitions of the group.
        partitions: partitions of the consumed topics (the cap of the lag rule).
        forecast_records_in_per_s: the highest arrival rate the predictive policy's forecast
            expects over its horizon; None without a forecast.
    """

    current: int
    cpu_percent: float | None = None
    records_in_per_s: float | None = None
    total_lag: float | None = None
    partitions: int | None = None
    forecast_records_in_per_s: float | None = None

    def metric_value(self, metric_type: MetricType) -> float | None:
        """The per-replica value a utilisation policy compares with its target."""
        if metric_type == "CPUUtilization":
            return self.cpu_percent
        if self.records_in_per_s is None or self.current <= 0:
            return None
        return self.records_in_per_s / self.current


@dataclass(frozen=True)
class Recommendation:
    """One rule's (or the winning) replica count, with the numbers that led to it."""

    replicas: int
    metric: str
    reason: str
    value: float | None = None
    target: float | None = None


def _ceil(x: float) -> int:
    return math.ceil(x - _EPSILON)


def within_tolerance(ratio: float, tolerance: float) -> bool:
    """HPA's dead band: ``|ratio - 1| <= tolerance`` (the boundary itself included)."""
    return abs(ratio - 1.0) <= tolerance + _EPSILON


def hpa_replicas(current: int, value: float, target: float, tolerance: float) -> int:
    """The HPA rule: ``ceil(current * value / target)``, or ``current`` within the tolerance."""
    if target <= 0:
        msg = f"HPA rule: target must be positive, got {target}"
        raise ValueError(msg)
    if within_tolerance(value / target, tolerance):
        return current
    return _ceil(current * value / target)


def lag_replicas(total_lag: float, lag_threshold: float, partitions: int | None) -> int:
    """KEDA's Kafka rule: ``ceil(total_lag / lag_threshold)``, capped at the partition count."""
    if lag_threshold <= 0:
        msg = f"lag rule: lag_threshold must be positive, got {lag_threshold}"
        raise ValueError(msg)
    replicas = _ceil(max(total_lag, 0.0) / lag_threshold)
    if partitions is not None and partitions > 0:
        replicas = min(replicas, partitions)
    return replicas


def _side(ratio: float, tolerance: float) -> int:
    """+1 above the dead band, -1 below it, 0 within."""
    if within_tolerance(ratio, tolerance):
        return 0
    return 1 if ratio > 1.0 else -1


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _fire(policy: ScalePolicy, current: int, value: float) -> int:
    if policy.action.type == "step":
        return current + (policy.action.adjustment or 0)
    return _ceil(current * value / policy.target_value)


def utilisation_recommendation(policy: AutoscalePolicy, obs: Observation) -> Recommendation | None:
    """The classic policy pair as HPA rules; None when there is nothing to measure."""
    if obs.current <= 0:
        return None
    tol = policy.tolerance
    up, down = policy.scale_up_policy, policy.scale_down_policy
    up_value = obs.metric_value(up.metric_type)
    if up_value is not None and _side(up_value / up.target_value, tol) > 0:
        replicas = _fire(up, obs.current, up_value)
        how = (
            f"ceil({obs.current} * {_fmt(up_value)} / {_fmt(up.target_value)}) = {replicas}"
            if up.action.type == "proportional"
            else f"step {up.action.adjustment:+d} -> {replicas}"
        )
        reason = (
            f"{up.metric} {_fmt(up_value)} above scale-up target {_fmt(up.target_value)} "
            f"(+{tol:.0%}): {how}"
        )
        return Recommendation(replicas, up.metric, reason, up_value, up.target_value)
    down_value = obs.metric_value(down.metric_type)
    if down_value is not None and _side(down_value / down.target_value, tol) < 0:
        replicas = _fire(down, obs.current, down_value)
        how = (
            f"ceil({obs.current} * {_fmt(down_value)} / {_fmt(down.target_value)}) = {replicas}"
            if down.action.type == "proportional"
            else f"step {down.action.adjustment:+d} -> {replicas}"
        )
        reason = (
            f"{down.metric} {_fmt(down_value)} below scale-down target "
            f"{_fmt(down.target_value)} (-{tol:.0%}): {how}"
        )
        return Recommendation(replicas, down.metric, reason, down_value, down.target_value)
    if up_value is not None:
        held, value = up, up_value
    elif down_value is not None:
        held, value = down, down_value
    else:
        return None
    reason = (
        f"{held.metric} {_fmt(value)} within [{_fmt(down.target_value * (1 - tol))}, "
        f"{_fmt(up.target_value * (1 + tol))}]: hold {obs.current}"
    )
    return Recommendation(obs.current, held.metric, reason, value, held.target_value)


def predictive_recommendation(policy: AutoscalePolicy, obs: Observation) -> Recommendation | None:
    """The predictive rule: ``ceil(forecast peak / records_per_replica)``, with HPA's tolerance.

    None when the policy has no ``predictive`` section or there is no forecast yet.
    """
    predictive = policy.predictive
    forecast = obs.forecast_records_in_per_s
    if predictive is None or forecast is None or obs.current <= 0:
        return None
    target = predictive.records_per_replica
    per_replica = forecast / obs.current
    if within_tolerance(per_replica / target, policy.tolerance):
        replicas = obs.current
        how = f"{_fmt(per_replica)} per replica within {policy.tolerance:.0%}: hold {replicas}"
    else:
        replicas = _ceil(forecast / target)
        how = f"ceil({_fmt(forecast)} / {_fmt(target)}) = {replicas}"
    reason = (
        f"forecast records_in_per_s {_fmt(forecast)} over the next {predictive.horizon_s:g} s "
        f"against records_per_replica {_fmt(target)}: {how}"
    )
    return Recommendation(replicas, "forecast", reason, forecast, target)


def lag_recommendation(policy: AutoscalePolicy, obs: Observation) -> Recommendation | None:
    """KEDA's Kafka scaler rule, with the HPA tolerance; None when lag is off or unknown."""
    lag_policy = policy.consumer_lag
    if lag_policy is None or obs.total_lag is None:
        return None
    threshold = lag_policy.lag_threshold
    cap = obs.partitions if lag_policy.cap_at_partitions else None
    raw = lag_replicas(obs.total_lag, threshold, None)
    per_replica = obs.total_lag / obs.current if obs.current > 0 else None
    if per_replica is not None and within_tolerance(per_replica / threshold, policy.tolerance):
        replicas = obs.current
        how = (
            f"{_fmt(per_replica)} per replica within {policy.tolerance:.0%} of it: hold {replicas}"
        )
    else:
        replicas = raw
        how = f"ceil({_fmt(obs.total_lag)} / {_fmt(threshold)}) = {raw}"
    if cap is not None and cap > 0 and replicas > cap:
        replicas = cap
        how += f", capped at {cap} partitions"
    reason = f"lag {_fmt(obs.total_lag)} against lag_threshold {_fmt(threshold)}: {how}"
    return Recommendation(replicas, "lag", reason, obs.total_lag, threshold)


def _activation_threshold(policy: AutoscalePolicy) -> float:
    return policy.consumer_lag.activation_lag_threshold if policy.consumer_lag else 0.0


def is_idle(policy: AutoscalePolicy, obs: Observation) -> bool:
    """No lag above the activation threshold and no throughput: nothing for a worker to do.

    Unknown lag, or unknown throughput while workers run, never counts as idle.
    """
    if obs.total_lag is None or obs.total_lag > _activation_threshold(policy):
        return False
    if obs.current > 0:
        return obs.records_in_per_s is not None and obs.records_in_per_s <= 0
    return True


def recommend(policy: AutoscalePolicy, obs: Observation) -> Recommendation:
    """The replica count all rules together recommend now, within the policy's bounds.

    The largest recommendation wins (ties go to the utilisation policy). A group at zero
    replicas is activated only by lag above the activation threshold; a running group that is
    idle is recommended zero replicas when ``min_replicas`` is 0 (the stabilisation window then
    makes that wait until it has been idle for the whole window).
    """
    threshold = _activation_threshold(policy)
    floor = max(policy.min_replicas, 1)
    if obs.current <= 0:
        lag = obs.total_lag
        if lag is not None and lag > threshold:
            by_lag = lag_recommendation(policy, obs)
            replicas = by_lag.replicas if by_lag else 1
            reason = f"activation: lag {_fmt(lag)} > activation_lag_threshold {_fmt(threshold)}"
            if by_lag:
                reason += f"; {by_lag.reason}"
            best = Recommendation(replicas, "lag", reason, lag, by_lag.target if by_lag else None)
        else:
            shown = "unknown" if lag is None else _fmt(lag)
            reason = f"lag {shown} <= activation_lag_threshold {_fmt(threshold)}: stay at 0"
            best = Recommendation(0, "lag", reason, lag, threshold)
            floor = policy.min_replicas
    elif policy.min_replicas == 0 and is_idle(policy, obs):
        reason = (
            f"idle: lag {_fmt(obs.total_lag or 0)} <= activation_lag_threshold "
            f"{_fmt(threshold)} and {_fmt(obs.records_in_per_s or 0)} records/s: scale to zero"
        )
        best = Recommendation(0, "idle", reason, obs.total_lag, threshold)
        floor = 0
    else:
        # A forecast takes the utilisation rule's place: both ask how many replicas the load
        # needs, the forecast before the load arrives.
        load = predictive_recommendation(policy, obs) or utilisation_recommendation(policy, obs)
        rules = (load, lag_recommendation(policy, obs))
        candidates = [r for r in rules if r is not None]
        if not candidates:
            reason = f"no metric values to act on: hold {obs.current}"
            best = Recommendation(obs.current, "none", reason)
        else:
            best = candidates[0]
            for other in candidates[1:]:
                if other.replicas > best.replicas:
                    best = replace(
                        other, reason=f"{other.reason} (beats {best.metric}: {best.reason})"
                    )
    return _clamp(best, floor, policy.max_replicas)


def _clamp(rec: Recommendation, low: int, high: int) -> Recommendation:
    if rec.replicas < low:
        return replace(rec, replicas=low, reason=f"{rec.reason}; raised to the minimum {low}")
    if rec.replicas > high:
        return replace(rec, replicas=high, reason=f"{rec.reason}; lowered to max_replicas {high}")
    return rec


def stabilise(current: int, recommended: int, window: Iterable[int]) -> int:
    """HPA semantics: scale up at once; scale down only to the highest recommendation in the window.

    ``window`` holds the recommendations of the stabilisation window, the current one included.
    """
    if recommended >= current:
        return recommended
    return min(current, max(window, default=recommended))


def limit_step(current: int, desired: int, max_step: int) -> int:
    """Never move more than ``max_step`` replicas in one decision."""
    if max_step < 1:
        msg = f"limit_step: max_step must be at least 1, got {max_step}"
        raise ValueError(msg)
    return current + max(-max_step, min(max_step, desired - current))
