"""The simulator: its queue, start-up and rebalance model, and the real controller driving it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lakecast.autoscaling.policy import AutoscalePolicy, parse_policy
from lakecast.autoscaling.simulate import (
    WORKER_MODEL,
    WorkerModel,
    load_worker_model,
    oracle_worker_seconds,
    simulate,
)
from lakecast.errors import ConfigError

WORKERS = WorkerModel(capacity=1000.0, startup_s=5.0, rebalance_pause_s=1.0, base_latency_s=0.05)


def lag_policy(**fields: Any) -> AutoscalePolicy:
    data: dict[str, Any] = {
        "scale_up_policy": {"target_value": 70},
        "scale_down_policy": {"target_value": 30},
        "consumer_lag": {"lag_threshold": 500},
        "max_replicas": 4,
        "max_step": 4,
        "windows": {
            "evaluation_interval_s": 2,
            "scale_down_stabilization_s": 10,
            "sample_max_age_s": 6,
        },
        "anomalies": {"hold_s": 0, "metrics": []},
    }
    data.update(fields)
    return parse_policy(data)


def test_enough_fixed_workers_keep_the_latency_at_its_base() -> None:
    outcome = simulate([1500.0] * 100, WORKERS, fixed=2, keep_series=True)
    assert outcome.seconds_above == 0
    assert outcome.worst_lag == 0
    assert outcome.worker_seconds == 200
    assert outcome.actions == 0
    assert outcome.latency_s == pytest.approx((0.05,) * 100)


def test_the_backlog_grows_by_arrivals_minus_capacity() -> None:
    outcome = simulate([1500.0] * 10, WORKERS, fixed=1, keep_series=True, target_latency_s=2.0)
    assert outcome.worst_lag == pytest.approx(10 * 500)
    # latency = base + lag / capacity: 0.55 s after the first second, 5.05 s after the tenth
    assert outcome.latency_s[0] == pytest.approx(0.55)
    assert outcome.latency_s[-1] == pytest.approx(5.05)
    assert outcome.seconds_above == 7  # seconds 4..10 wait more than 2 s
    assert outcome.share_above == pytest.approx(0.7)


def test_a_scale_up_serves_after_the_start_up_time_and_stalls_the_group() -> None:
    rates = [500.0] * 10 + [3000.0] * 60
    outcome = simulate(rates, WORKERS, policy=lag_policy(), keep_series=True)
    up = next(t for t, n in enumerate(outcome.workers) if n > 1)
    assert outcome.actions >= 1
    assert 10 <= up <= 13  # the lag rule fires at the first evaluation after the rise
    # Started workers are paid for at once but serve only start-up seconds later, and their
    # joining stalls every member: the backlog peaks after the start-up time, then drains.
    assert outcome.worst_lag >= 2000 * WORKERS.startup_s
    assert outcome.latency_s[-1] == pytest.approx(0.05)


def test_the_controller_scales_down_after_the_load_goes() -> None:
    rates = [3500.0] * 40 + [200.0] * 80
    outcome = simulate(rates, WORKERS, policy=lag_policy(), keep_series=True)
    assert outcome.workers[0] == 4  # a running fleet sized for its first second
    assert outcome.workers[-1] == 1
    assert outcome.worker_seconds < 4 * len(rates)


def test_simulate_takes_a_policy_or_a_fixed_count() -> None:
    with pytest.raises(ValueError, match="either a policy or a fixed"):
        simulate([1.0], WORKERS)
    with pytest.raises(ValueError, match="either a policy or a fixed"):
        simulate([1.0], WORKERS, policy=lag_policy(), fixed=1)
    with pytest.raises(ValueError, match="capacity must be positive"):
        WorkerModel(capacity=0, startup_s=1, rebalance_pause_s=1)


def test_oracle_is_just_enough_capacity_each_second() -> None:
    assert oracle_worker_seconds([0.0, 999.0, 1000.0, 1001.0, 3500.0], WORKERS) == 1 + 1 + 1 + 2 + 4


def test_the_measured_worker_figures_load(tmp_path: Path) -> None:
    measured = load_worker_model(WORKER_MODEL)
    assert measured.capacity > 1000
    assert measured.startup_s > 0
    assert measured.rebalance_pause_s > 0
    bad = tmp_path / "workers.json"
    bad.write_text(json.dumps({"capacity_per_worker": 10}), encoding="utf-8")
    with pytest.raises(ConfigError, match="startup_s"):
        load_worker_model(bad)
    with pytest.raises(ConfigError, match=r"missing\.json"):
        load_worker_model(tmp_path / "missing.json")
