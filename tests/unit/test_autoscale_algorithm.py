"""The pure scaling rules: HPA formula and tolerance, KEDA's lag rule, largest wins, bounds."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakecast.autoscaling.algorithm import (
    Observation,
    hpa_replicas,
    lag_recommendation,
    lag_replicas,
    limit_step,
    recommend,
    stabilise,
    utilisation_recommendation,
)
from lakecast.autoscaling.policy import AutoscalePolicy, parse_policy


def hpa_policy(target: float = 50, **extra: object) -> AutoscalePolicy:
    """A policy with equal up and down targets: exactly the Kubernetes HPA."""
    return parse_policy(
        {
            "scale_up_policy": {"target_value": target},
            "scale_down_policy": {"target_value": target},
            **extra,
        }
    )


# --- the HPA formula -------------------------------------------------------------------------


def test_hpa_scales_up_by_the_ratio() -> None:
    # 4 replicas at 84 % against 70 %: ceil(4 * 1.2) = 5
    assert hpa_replicas(4, 84, 70, 0.1) == math.ceil(4 * 84 / 70)
    assert hpa_replicas(4, 84, 70, 0.1) == 5


def test_hpa_scales_down_by_the_ratio() -> None:
    assert hpa_replicas(10, 20, 50, 0.1) == 4


def test_hpa_exact_multiple_is_not_rounded_up_by_float_noise() -> None:
    # 2 * 105 / 70 is exactly 3
    assert hpa_replicas(2, 105, 70, 0.1) == 3
    assert hpa_replicas(3, 0.7 * 10, 0.7, 0.1) == 30


@pytest.mark.parametrize("value", [63, 66.5, 70, 73.5, 77])
def test_hpa_holds_within_tolerance_boundary_included(value: float) -> None:
    assert hpa_replicas(6, value, 70, 0.1) == 6


@pytest.mark.parametrize(("value", "expected"), [(77.5, 7), (62.5, 6)])
def test_hpa_acts_just_beyond_tolerance(value: float, expected: int) -> None:
    assert hpa_replicas(6, value, 70, 0.1) == expected == math.ceil(6 * value / 70)


@given(
    current=st.integers(min_value=1, max_value=200),
    value=st.integers(min_value=0, max_value=1000),
    target=st.integers(min_value=1, max_value=500),
)
def test_hpa_matches_exact_arithmetic(current: int, value: int, target: int) -> None:
    ratio = Fraction(value, target)
    expected = current if abs(ratio - 1) <= Fraction(1, 10) else math.ceil(current * ratio)
    assert hpa_replicas(current, value, target, 0.1) == expected


# --- KEDA's lag rule -------------------------------------------------------------------------


def test_lag_rule_is_ceil_of_lag_over_threshold() -> None:
    assert lag_replicas(950, 100, None) == 10
    assert lag_replicas(1000, 100, None) == 10
    assert lag_replicas(1, 100, None) == 1
    assert lag_replicas(0, 100, None) == 0


def test_lag_rule_is_capped_at_the_partition_count() -> None:
    assert lag_replicas(950, 100, 6) == 6
    assert lag_replicas(250, 100, 6) == 3


def test_lag_recommendation_uses_tolerance_and_cap() -> None:
    policy = hpa_policy(consumer_lag={"lag_threshold": 100})
    # 520 over 5 replicas is 104 per replica, within 10 % of 100: hold
    held = lag_recommendation(policy, Observation(current=5, total_lag=520, partitions=12))
    assert held is not None
    assert held.replicas == 5
    grown = lag_recommendation(policy, Observation(current=2, total_lag=2000, partitions=6))
    assert grown is not None
    assert grown.replicas == 6
    assert "capped at 6 partitions" in grown.reason
    uncapped_policy = hpa_policy(consumer_lag={"lag_threshold": 100, "cap_at_partitions": False})
    uncapped = lag_recommendation(
        uncapped_policy, Observation(current=2, total_lag=2000, partitions=6)
    )
    assert uncapped is not None
    assert uncapped.replicas == 20


# --- the policy pair -------------------------------------------------------------------------


def test_band_between_down_and_up_targets_holds() -> None:
    policy = AutoscalePolicy()  # 30 down, 70 up
    for cpu in (28, 45, 60, 76):
        rec = utilisation_recommendation(policy, Observation(current=4, cpu_percent=cpu))
        assert rec is not None
        assert rec.replicas == 4, (cpu, rec.reason)


def test_down_policy_uses_its_own_target() -> None:
    policy = AutoscalePolicy()
    rec = utilisation_recommendation(policy, Observation(current=6, cpu_percent=10))
    assert rec is not None
    assert rec.replicas == math.ceil(6 * 10 / 30)
    assert "below scale-down target 30" in rec.reason


def test_step_actions_move_by_the_adjustment() -> None:
    policy = parse_policy(
        {
            "scale_up_policy": {"target_value": 70, "action": {"type": "step", "adjustment": 2}},
            "scale_down_policy": {"target_value": 30, "action": {"type": "step", "adjustment": -1}},
        }
    )
    up = utilisation_recommendation(policy, Observation(current=3, cpu_percent=95))
    down = utilisation_recommendation(policy, Observation(current=3, cpu_percent=5))
    assert up is not None
    assert down is not None
    assert (up.replicas, down.replicas) == (5, 2)


def test_records_per_second_policy_is_per_replica() -> None:
    policy = parse_policy(
        {
            "scale_up_policy": {"metric_type": "RecordsInPerSecond", "target_value": 500},
            "scale_down_policy": {"metric_type": "RecordsInPerSecond", "target_value": 500},
        }
    )
    rec = utilisation_recommendation(policy, Observation(current=2, records_in_per_s=3000))
    assert rec is not None
    assert rec.metric == "records_in_per_s"
    assert rec.replicas == 6  # 1500 per replica against 500


# --- combining and bounding ------------------------------------------------------------------


def test_largest_recommendation_wins() -> None:
    policy = hpa_policy(max_replicas=20, consumer_lag={"lag_threshold": 100})
    by_lag = recommend(
        policy, Observation(current=4, cpu_percent=60, records_in_per_s=10, total_lag=800)
    )
    assert (by_lag.replicas, by_lag.metric) == (8, "lag")
    assert "beats cpu_percent" in by_lag.reason
    by_cpu = recommend(
        policy, Observation(current=4, cpu_percent=100, records_in_per_s=10, total_lag=100)
    )
    assert (by_cpu.replicas, by_cpu.metric) == (8, "cpu_percent")


def test_recommendation_is_clamped_to_the_bounds() -> None:
    policy = hpa_policy(min_replicas=2, max_replicas=5)
    high = recommend(policy, Observation(current=4, cpu_percent=100, records_in_per_s=1))
    low = recommend(policy, Observation(current=4, cpu_percent=1, records_in_per_s=1))
    assert high.replicas == 5
    assert "max_replicas 5" in high.reason
    assert low.replicas == 2
    assert "minimum 2" in low.reason


def test_running_group_with_work_never_goes_below_one() -> None:
    policy = hpa_policy(min_replicas=0)
    rec = recommend(policy, Observation(current=3, cpu_percent=0, records_in_per_s=5, total_lag=0))
    assert rec.replicas == 1


def test_idle_group_is_recommended_zero_only_when_min_is_zero() -> None:
    idle = Observation(current=3, cpu_percent=2, records_in_per_s=0, total_lag=0)
    assert recommend(hpa_policy(min_replicas=0), idle).replicas == 0
    assert recommend(hpa_policy(min_replicas=0), idle).metric == "idle"
    assert recommend(hpa_policy(min_replicas=1), idle).replicas == 1
    busy = Observation(current=3, cpu_percent=2, records_in_per_s=0, total_lag=50)
    assert recommend(hpa_policy(min_replicas=0), busy).replicas >= 1
    unknown_lag = Observation(current=3, cpu_percent=2, records_in_per_s=0)
    assert recommend(hpa_policy(min_replicas=0), unknown_lag).replicas >= 1


def test_activation_from_zero_needs_lag_above_the_activation_threshold() -> None:
    policy = hpa_policy(
        min_replicas=0, consumer_lag={"lag_threshold": 100, "activation_lag_threshold": 10}
    )
    assert recommend(policy, Observation(current=0, total_lag=10, partitions=6)).replicas == 0
    assert recommend(policy, Observation(current=0, partitions=6)).replicas == 0
    assert recommend(policy, Observation(current=0, total_lag=11, partitions=6)).replicas == 1
    woken = recommend(policy, Observation(current=0, total_lag=250, partitions=6))
    assert woken.replicas == 3
    assert "activation" in woken.reason
    capped = recommend(policy, Observation(current=0, total_lag=5000, partitions=6))
    assert capped.replicas == 6


def test_zero_replicas_with_positive_min_goes_to_min() -> None:
    policy = hpa_policy(min_replicas=2)
    assert recommend(policy, Observation(current=0, total_lag=0)).replicas == 2


def test_no_values_holds() -> None:
    rec = recommend(hpa_policy(), Observation(current=3))
    assert (rec.replicas, rec.metric) == (3, "none")


# --- window and step -------------------------------------------------------------------------


def test_stabilise_scales_up_at_once_and_down_to_the_window_max() -> None:
    assert stabilise(4, 7, [2, 3, 7]) == 7
    assert stabilise(6, 2, [5, 3, 2]) == 5
    assert stabilise(4, 2, [6, 2]) == 4  # never up through the down path
    assert stabilise(4, 2, [2]) == 2


def test_limit_step_bounds_both_directions() -> None:
    assert limit_step(1, 10, 3) == 4
    assert limit_step(10, 1, 3) == 7
    assert limit_step(5, 6, 3) == 6
    with pytest.raises(ValueError, match="max_step"):
        limit_step(1, 2, 0)
