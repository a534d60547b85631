"""A simulated consumer group on a simulated clock, scaled by the real controller.

Policies are compared over days of load in seconds: the load is a queue, the workers are a
capacity, and the decisions come from :class:`~lakecast.autoscaling.controller.ScalingController`
itself (the same code the autoscaler service runs), fed with the samples the workers would send
and the lag the service would measure. Per second of the trace:

* ``lag += arrivals - served``, where the group serves at most ``serving workers * capacity``,
  less the share of the second it spends stalled in a rebalance;
* a worker started at ``t`` serves from ``t + startup_s``; every change of the group's members
  (a worker joining when it is ready, or leaving when it is stopped) stalls all of them for
  ``rebalance_pause_s``, as an eager rebalance does;
* the latency of the second's events is ``base_latency_s + stalled time + lag / capacity``
  (the time the backlog needs to drain at the group's capacity);
* worker-seconds count every started process, ready or not (it holds its resources either way).

The worker figures (capacity, start-up time, rebalance pause, CPU at capacity) are measured with
real workers on a real broker by ``benchmarks/autoscaling_measure.py`` and kept in
``conf/autoscale-workers.json``; :func:`load_worker_model` reads them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lakecast.autoscaling.controller import ScalingController
from lakecast.autoscaling.policy import PROJECT_ROOT, AutoscalePolicy
from lakecast.errors import ConfigError

WORKER_MODEL = PROJECT_ROOT / "conf" / "autoscale-workers.json"
EPOCH = 1_700_000_000.0  # the simulated clock's origin (any fixed epoch will do)


@dataclass(frozen=True)
class WorkerModel:
    """What one inference worker is to the simulator.

    Attributes:
        capacity: events/s one worker serves from a backlog.
        startup_s: from the process start to its first served event (the group's join included).
        rebalance_pause_s: how long every member stalls when the group's members change.
        cpu_percent_at_capacity: the CPU a worker reports while it serves at capacity.
        base_latency_s: the latency of an event with no backlog.
        sample_interval_s: how often a worker sends a sample.
    """

    capacity: float
    startup_s: float
    rebalance_pause_s: float
    cpu_percent_at_capacity: float = 100.0
    base_latency_s: float = 0.05
    sample_interval_s: float = 2.0

    def __post_init__(self) -> None:
        if self.capacity <= 0 or self.startup_s < 0 or self.rebalance_pause_s < 0:
            msg = (
                f"worker model: capacity must be positive and times non-negative, found "
                f"capacity {self.capacity}, startup_s {self.startup_s}, "
                f"rebalance_pause_s {self.rebalance_pause_s}"
            )
            raise ValueError(msg)


def load_worker_model(path: str | Path | None = None) -> WorkerModel:
    """The measured worker figures (``conf/autoscale-workers.json`` by default).

    Raises:
        ConfigError: the file is missing, not JSON, or lacks a figure.
    """
    file = Path(path) if path is not None else WORKER_MODEL
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        return WorkerModel(
            capacity=float(data["capacity_per_worker"]),
            startup_s=float(data["startup_s"]),
            rebalance_pause_s=float(data["rebalance_pause_s"]),
            cpu_percent_at_capacity=float(data.get("cpu_percent_at_capacity") or 100.0),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        msg = f"worker model {file}: {exc!r}"
        raise ConfigError(msg) from exc


@dataclass(frozen=True)
class SimOutcome:
    """One policy over one trace.

    Attributes:
        seconds: the trace's length.
        seconds_above: seconds whose latency exceeded the target.
        worker_seconds: the integral of the started workers over the trace.
        actions: decisions that changed the replica count.
        worst_lag: the largest backlog, events.
        max_workers: the most workers started at once.
        worst_latency_s: the highest latency of a second.
        latency_s: the latency of each second.
        workers: the workers started in each second.
    """

    seconds: int
    seconds_above: int
    worker_seconds: float
    actions: int
    worst_lag: float
    max_workers: int
    worst_latency_s: float
    latency_s: tuple[float, ...] = ()
    workers: tuple[int, ...] = ()

    @property
    def share_above(self) -> float:
        return self.seconds_above / self.seconds if self.seconds else 0.0


def _overlap(start: float, end: float, stalls: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(end, b) - max(start, a)) for a, b in stalls)


def simulate(
    rates: Sequence[float],
    workers: WorkerModel,
    *,
    policy: AutoscalePolicy | None = None,
    fixed: int | None = None,
    target_latency_s: float = 1.0,
    partitions: int | None = None,
    keep_series: bool = False,
) -> SimOutcome:
    """Play ``rates`` (events per second of the trace) through a simulated group.

    Args:
        rates: arrivals in each second.
        workers: the measured worker figures.
        policy: the autoscaling policy; the group starts ready, as a fleet that has been
            running, with the workers the first second needs at 70 % of their capacity
            (within ``[max(min_replicas, 1), max_replicas]``).
        fixed: instead of a policy, this many workers for the whole trace.
        target_latency_s: the latency a second must not exceed.
        partitions: the input's partition count (caps the lag rule); default: ``max_replicas``.
        keep_series: keep the latency and the worker count of every second.
    """
    if (policy is None) == (fixed is None):
        msg = "simulate: give either a policy or a fixed worker count"
        raise ValueError(msg)
    controller = None
    if policy is not None:
        controller = ScalingController(policy, group="simulated", source="simulator")
        first = math.ceil(rates[0] / (0.7 * workers.capacity)) if rates else 0
        start = min(max(first, policy.min_replicas, 1), policy.max_replicas)
        ready = [-math.inf] * start
        interval = policy.windows.evaluation_interval_s
        partitions = partitions or policy.max_replicas
    else:
        ready = [-math.inf] * (fixed or 0)
        interval = math.inf
    stalls: list[tuple[float, float]] = []
    lag = 0.0
    served_since_sample = 0.0
    last_sample = next_sample = 0.0
    next_decision = interval
    above = actions = max_workers = 0
    worker_seconds = worst_lag = worst_latency = 0.0
    latencies: list[float] = []
    counts: list[int] = []
    pause = workers.rebalance_pause_s
    for second, arrivals in enumerate(rates):
        t = float(second)
        # Workers that became ready during the last second join now: a rebalance.
        joined = sum(1 for r in ready if t - 1 < r <= t)
        if joined and any(r < t - 1 for r in ready):
            stalls.append((t, t + pause))
        serving = sum(1 for r in ready if r <= t)
        stalled = _overlap(t, t + 1, stalls)
        capacity = serving * workers.capacity * max(1.0 - stalled, 0.0)
        served = min(lag + arrivals, capacity)
        lag = lag + arrivals - served
        served_since_sample += served
        if serving:
            latency = workers.base_latency_s + stalled + lag / (serving * workers.capacity)
        else:
            latency = math.inf
        above += latency > target_latency_s
        worst_latency = max(worst_latency, latency)
        worst_lag = max(worst_lag, lag)
        worker_seconds += len(ready)
        max_workers = max(max_workers, len(ready))
        if keep_series:
            latencies.append(latency)
            counts.append(len(ready))
        stalls = [(a, b) for a, b in stalls if b > t + 1]
        now = t + 1
        if controller is None:
            continue
        if now >= next_sample:
            _send_samples(controller, workers, now, serving, served_since_sample, last_sample)
            served_since_sample = 0.0
            last_sample, next_sample = now, now + workers.sample_interval_s
        if now >= next_decision:
            next_decision = now + interval
            decision = controller.evaluate(
                EPOCH + now, len(ready), partitions=partitions, group_lag=lag
            )
            if decision.desired > len(ready):
                ready += [now + workers.startup_s] * (decision.desired - len(ready))
                actions += 1
            elif decision.desired < len(ready):
                ready.sort()
                gone, ready = ready[decision.desired :], ready[: decision.desired]
                if any(r <= now for r in gone) and any(r <= now for r in ready):
                    stalls.append((now, now + pause))
                actions += 1
    return SimOutcome(
        seconds=len(rates),
        seconds_above=above,
        worker_seconds=worker_seconds,
        actions=actions,
        worst_lag=worst_lag,
        max_workers=max_workers,
        worst_latency_s=worst_latency,
        latency_s=tuple(latencies),
        workers=tuple(counts),
    )


def oracle_worker_seconds(rates: Sequence[float], workers: WorkerModel) -> float:
    """The least worker-seconds any policy could spend: each second, just enough capacity for
    its arrivals (a clairvoyant with no start-up time and no rebalance pause)."""
    return float(sum(max(math.ceil(r / workers.capacity - 1e-9), 1) for r in rates))


def _send_samples(
    controller: ScalingController,
    workers: WorkerModel,
    now: float,
    serving: int,
    served: float,
    since: float,
) -> None:
    """One sample per serving worker, as :class:`lakecast.serving.metrics` would send it."""
    if serving <= 0:
        return
    per_worker = served / max(now - since, 1e-9) / serving
    cpu = workers.cpu_percent_at_capacity * min(per_worker / workers.capacity, 1.0)
    for index in range(serving):
        controller.observe_sample(
            {
                "kind": "sample",
                "source": f"worker-{index}",
                "ts": EPOCH + now,
                "cpu_percent": cpu,
                "records_in_per_s": per_worker,
            }
        )
