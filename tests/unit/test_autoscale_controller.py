"""The controller over a simulated clock: windows, steps, scale to zero, anomalies, no flapping."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from lakecast.autoscaling.controller import ScalingController
from lakecast.autoscaling.decision import ScalingDecision
from lakecast.autoscaling.policy import AutoscalePolicy, parse_policy
from lakecast.errors import DataError
from lakecast.kafka.timestamps import to_epoch

T0 = 1_700_000_000.0


def policy_of(**fields: Any) -> AutoscalePolicy:
    """A pure-HPA policy (equal up and down targets of 50 %), lag off unless given."""
    data: dict[str, Any] = {
        "scale_up_policy": {"target_value": 50},
        "scale_down_policy": {"target_value": 50},
        "consumer_lag": None,
        "max_replicas": 20,
        "windows": {"evaluation_interval_s": 5, "scale_down_stabilization_s": 60},
    }
    data.update(fields)
    return parse_policy(data)


def sample(source: str, ts: float, **fields: Any) -> dict[str, Any]:
    return {"kind": "sample", "source": source, "ts": ts, **fields}


def simulate(
    controller: ScalingController,
    *,
    replicas: int,
    seconds: float,
    step: float,
    demand: Callable[[float], float],
    records: float = 50.0,
    lag: float | None = None,
) -> list[ScalingDecision]:
    """Workers share a CPU demand (in percent of one worker) and report every ``step`` s."""
    decisions = []
    t = 0.0
    while t < seconds:
        now = T0 + t
        for i in range(replicas):
            fields: dict[str, Any] = {
                "cpu_percent": demand(t) / replicas,
                "records_in_per_s": records,
            }
            if lag is not None:
                fields["lag"] = lag / replicas
            controller.observe(sample(f"w{i}", now, **fields))
        decision = controller.evaluate(now, current=replicas)
        decisions.append(decision)
        replicas = decision.desired
        t += step
    return decisions


def changes(decisions: list[ScalingDecision]) -> int:
    return sum(1 for d in decisions if d.changed)


# --- aggregation -----------------------------------------------------------------------------


def test_cpu_is_averaged_and_throughput_summed() -> None:
    controller = ScalingController(policy_of())
    controller.observe(sample("w1", T0, cpu_percent=30, records_in_per_s=100))
    controller.observe(sample("w2", T0, cpu_percent=60, records_in_per_s=50))
    obs = controller.observation(T0 + 1, current=2)
    assert obs.cpu_percent == pytest.approx(45)
    assert obs.records_in_per_s == pytest.approx(150)


def test_partition_lags_are_deduplicated_newest_report_wins() -> None:
    controller = ScalingController(policy_of())
    controller.observe(sample("w1", T0 + 10, lag={"0": 5, "1": 7}))
    controller.observe(sample("w2", T0 + 12, lag={"1": 3, "2": 4}))
    assert controller.observation(T0 + 13, current=2).total_lag == 5 + 3 + 4


def test_plain_lags_are_summed_and_group_lag_wins() -> None:
    controller = ScalingController(policy_of())
    controller.observe(sample("w1", T0, lag=10))
    controller.observe(sample("w2", T0, lag=20))
    assert controller.observation(T0 + 1, current=2).total_lag == 30
    assert controller.observation(T0 + 1, current=2, group_lag=7).total_lag == 7


def test_stale_and_out_of_order_samples_do_not_count() -> None:
    controller = ScalingController(policy_of())  # sample_max_age_s 30 by default
    controller.observe(sample("w1", T0, cpu_percent=90))
    controller.observe(sample("w2", T0 + 40, cpu_percent=20))
    controller.observe(sample("w2", T0 + 35, cpu_percent=99))  # older than w2's newest
    obs = controller.observation(T0 + 41, current=1)
    assert obs.cpu_percent == pytest.approx(20)


def test_partition_count_comes_from_assignments_unless_given() -> None:
    controller = ScalingController(policy_of())
    controller.observe(sample("w1", T0, partitions=[0, 1, 2]))
    controller.observe(sample("w2", T0, partitions=[3, 4, 5]))
    assert controller.observation(T0, current=2).partitions == 6
    assert controller.observation(T0, current=2, partitions=12).partitions == 12


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (sample("w1", T0, cpu_percent="high"), "cpu_percent must be a finite number"),
        (sample("w1", T0, lag=-3), "lag must not be negative"),
        (sample("w1", T0, lag={"0": None}), "lag of partition '0' is null"),
        (sample("w1", T0, partitions="all"), "partitions must be a list"),
        ({"kind": "sample", "source": "w1"}, "'ts' is missing"),
        ({"kind": "sample", "ts": T0}, "source must be a non-empty string"),
        (sample("w1", "yesterday"), "not ISO-8601"),
    ],
)
def test_bad_samples_are_refused_with_the_field(record: dict[str, Any], expected: str) -> None:
    controller = ScalingController(policy_of())
    with pytest.raises(DataError, match=expected):
        controller.observe(record)


def test_other_record_kinds_are_ignored_and_iso_ts_is_read() -> None:
    controller = ScalingController(policy_of())
    controller.observe({"kind": "scaling", "source": "x", "ts": T0})
    assert controller.fresh_samples(T0) == []
    controller.observe(sample("w1", "2023-11-14T22:13:20Z", cpu_percent=10))
    assert [s.ts for s in controller.fresh_samples(to_epoch("2023-11-14T22:13:25Z"))] == [
        to_epoch("2023-11-14T22:13:20+00:00")
    ]


# --- decisions over time ---------------------------------------------------------------------


def test_scale_up_is_immediate() -> None:
    controller = ScalingController(policy_of())
    for i in range(4):
        controller.observe(sample(f"w{i}", T0, cpu_percent=80, records_in_per_s=10))
    decision = controller.evaluate(T0, current=4)
    assert decision.desired == math.ceil(4 * 80 / 50)
    assert decision.metric == "cpu_percent"
    assert "ceil(4 * 80 / 50)" in decision.reason


def test_a_restarted_controller_does_not_scale_down_at_once() -> None:
    controller = ScalingController(policy_of())
    for i in range(4):
        controller.observe(sample(f"w{i}", T0, cpu_percent=5, records_in_per_s=10))
    decision = controller.evaluate(T0)  # current: the 4 workers seen
    assert (decision.current, decision.desired, decision.recommended) == (4, 4, 1)
    assert "stabilisation window" in decision.reason


def test_scale_down_waits_for_the_stabilisation_window() -> None:
    policy = policy_of()
    window = policy.windows.scale_down_stabilization_s
    controller = ScalingController(policy)
    # a burst at t=0 (4 workers at 80 %), then a load of 140 % shared: 20 % each at 7 replicas
    decisions = simulate(
        controller,
        replicas=4,
        seconds=window + 30,
        step=5,
        demand=lambda t: 320 if t == 0 else 140,
    )
    assert decisions[0].desired == 7
    first_down = next(d for d in decisions if d.direction == "down")
    assert first_down.ts - T0 == window  # the burst's recommendation left the window just now
    assert all(d.desired == 7 for d in decisions[1:] if d.ts < first_down.ts)
    assert first_down.desired == math.ceil(7 * 20 / 50)


def test_no_decision_moves_more_than_max_step() -> None:
    controller = ScalingController(
        policy_of(max_step=2, max_replicas=10, consumer_lag={"lag_threshold": 100})
    )
    desired = []
    current = 1
    for k in range(6):
        now = T0 + 5 * k
        for i in range(current):
            controller.observe(sample(f"w{i}", now, cpu_percent=50, records_in_per_s=10))
        decision = controller.evaluate(now, current=current, group_lag=1000, partitions=12)
        desired.append(decision.desired)
        current = decision.desired
    assert desired == [3, 5, 7, 9, 10, 10]
    assert "max_step 2" in controller.evaluate(T0 + 30, current=1, group_lag=1000).reason


def test_scale_to_zero_when_idle_for_the_window_then_activation_on_lag() -> None:
    policy = policy_of(
        min_replicas=0,
        max_step=10,
        consumer_lag={"lag_threshold": 100, "activation_lag_threshold": 10},
        windows={"evaluation_interval_s": 5, "scale_down_stabilization_s": 30},
    )
    controller = ScalingController(policy, partitions=6)
    decisions = simulate(
        controller, replicas=3, seconds=60, step=5, demand=lambda t: 3, records=0.0, lag=0
    )
    first_zero = next(d for d in decisions if d.desired == 0)
    assert first_zero.ts - T0 == 30
    assert first_zero.metric == "idle"
    assert all(d.desired == 3 for d in decisions if d.ts < first_zero.ts)
    assert decisions[-1].desired == 0
    # at zero, only the group's lag from the broker can wake it up
    quiet = controller.evaluate(T0 + 100, current=0, group_lag=10)
    assert quiet.desired == 0
    woken = controller.evaluate(T0 + 105, current=0, group_lag=250)
    assert (woken.desired, woken.metric) == (3, "lag")
    assert "activation" in woken.reason
    flooded = controller.evaluate(T0 + 110, current=0, group_lag=10_000)
    assert flooded.desired == 6  # capped at the partitions


def test_throughput_keeps_a_group_from_scaling_to_zero() -> None:
    policy = policy_of(min_replicas=0, consumer_lag={"lag_threshold": 100})
    controller = ScalingController(policy)
    decisions = simulate(
        controller, replicas=2, seconds=300, step=5, demand=lambda t: 2, records=1.0, lag=0
    )
    assert min(d.desired for d in decisions) == 1


def _idle_then_anomaly(metric: str) -> list[ScalingDecision]:
    policy = policy_of(
        windows={"evaluation_interval_s": 5, "scale_down_stabilization_s": 10},
        anomalies={"hold_s": 60},
    )
    controller = ScalingController(policy)
    controller.observe(
        {"kind": "anomaly", "metric": metric, "source": "w0", "score": 4.2, "ts": T0 + 2}
    )
    return simulate(controller, replicas=4, seconds=90, step=5, demand=lambda t: 80)


def test_open_anomaly_on_lag_blocks_scale_down_until_its_hold_ends() -> None:
    decisions = _idle_then_anomaly("lag")
    blocked = [d for d in decisions if T0 + 10 <= d.ts < T0 + 62]
    assert blocked
    assert all(d.desired == 4 for d in blocked)
    assert all("anomaly" in d.reason and "score 4.2" in d.reason for d in blocked)
    first_down = next(d for d in decisions if d.direction == "down")
    assert first_down.ts - T0 == 65
    assert first_down.desired == math.ceil(4 * 20 / 50)


def test_anomaly_on_an_unrelated_metric_does_not_block() -> None:
    decisions = _idle_then_anomaly("latency_ms")
    first_down = next(d for d in decisions if d.direction == "down")
    assert first_down.ts - T0 == 10


# --- no flapping -----------------------------------------------------------------------------


def _oscillating(amplitude: float, base: float, period_s: float = 120) -> Callable[[float], float]:
    return lambda t: base * (1 + amplitude * math.sin(2 * math.pi * t / period_s))


HOUR = 3600.0


def test_metric_within_tolerance_of_target_never_changes_replicas() -> None:
    policy = policy_of(windows={"evaluation_interval_s": 15, "scale_down_stabilization_s": 300})
    decisions = simulate(
        ScalingController(policy),
        replicas=4,
        seconds=HOUR,
        step=15,
        demand=_oscillating(0.08, base=4 * 50),
    )
    assert len(decisions) == HOUR / 15
    assert changes(decisions) == 0


def test_metric_a_bit_beyond_tolerance_settles_instead_of_flapping() -> None:
    policy = policy_of(windows={"evaluation_interval_s": 15, "scale_down_stabilization_s": 300})
    demand = _oscillating(0.15, base=4 * 50)
    decisions = simulate(
        ScalingController(policy), replicas=4, seconds=HOUR, step=15, demand=demand
    )
    assert changes(decisions) <= 2
    # the same load without a stabilisation window flaps: the window is what holds it
    no_window = policy_of(windows={"evaluation_interval_s": 15, "scale_down_stabilization_s": 0})
    flapping = simulate(
        ScalingController(no_window), replicas=4, seconds=HOUR, step=15, demand=demand
    )
    assert changes(flapping) > 10 * changes(decisions) + 10


def test_default_band_policy_does_not_flap_around_the_up_target() -> None:
    policy = AutoscalePolicy(max_replicas=20, consumer_lag=None)
    decisions = simulate(
        ScalingController(policy),
        replicas=4,
        seconds=HOUR,
        step=15,
        demand=_oscillating(0.15, base=4 * 70),
    )
    assert changes(decisions) <= 2


# --- outputs ---------------------------------------------------------------------------------


def test_decision_is_a_scaling_record_and_sets_the_gauge() -> None:
    controller = ScalingController(policy_of(), group="test-gauge-group", source="autoscaler-1")
    for i in range(2):
        controller.observe(sample(f"w{i}", T0, cpu_percent=100, records_in_per_s=10))
    decision = controller.evaluate(T0, current=2)
    record = json.loads(decision.to_json())
    assert record["kind"] == "scaling"
    assert record["source"] == "autoscaler-1"
    assert (record["current"], record["desired"], record["metric"]) == (2, 4, "cpu_percent")
    assert record["direction"] == "up"
    assert to_epoch(record["ts"]) == T0
    assert ScalingDecision.from_record(record) == decision
    gauge = REGISTRY.get_sample_value("lakecast_desired_replicas", {"group": "test-gauge-group"})
    assert gauge == decision.desired


def test_scaling_record_with_a_bad_field_is_refused() -> None:
    with pytest.raises(DataError, match="current must be an integer"):
        ScalingDecision.from_record(
            {
                "kind": "scaling",
                "source": "a",
                "ts": T0,
                "current": "2",
                "desired": 3,
                "metric": "lag",
                "reason": "r",
            }
        )
    with pytest.raises(DataError, match="'reason' is missing"):
        ScalingDecision.from_record(
            {
                "kind": "scaling",
                "source": "a",
                "ts": T0,
                "current": 2,
                "desired": 3,
                "metric": "lag",
            }
        )


def test_due_follows_the_evaluation_interval() -> None:
    controller = ScalingController(policy_of())
    assert controller.due(T0)
    controller.evaluate(T0, current=1)
    assert not controller.due(T0 + 4.9)
    assert controller.due(T0 + 5)
