"""The predictive policy: its forecast on a seasonal series, its rule, and scaling ahead of load."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from lakecast.autoscaling.algorithm import Observation, predictive_recommendation, recommend
from lakecast.autoscaling.controller import ScalingController
from lakecast.autoscaling.policy import AutoscalePolicy, load_policy, parse_policy
from lakecast.autoscaling.predictive import LoadForecaster
from lakecast.autoscaling.simulate import WorkerModel, simulate
from lakecast.errors import ConfigError

SEASON = 288.0
STEP = 3.0
T0 = 1_700_000_000.0


def predictive(**fields: Any) -> dict[str, Any]:
    return {
        "records_per_replica": 700,
        "season_s": SEASON,
        "horizon_s": 20,
        "level_window_s": 30,
        "step_s": STEP,
        **fields,
    }


def policy_of(**fields: Any) -> AutoscalePolicy:
    data: dict[str, Any] = {
        "scale_up_policy": {"target_value": 70},
        "scale_down_policy": {"target_value": 30},
        "consumer_lag": {"lag_threshold": 500},
        "max_replicas": 6,
        "max_step": 3,
        "windows": {
            "evaluation_interval_s": STEP,
            "scale_down_stabilization_s": 30,
            "sample_max_age_s": 6,
        },
        "anomalies": {"hold_s": 0, "metrics": []},
    }
    data.update(fields)
    return parse_policy(data)


def seasonal_rate(t: float) -> float:
    """A day of 288 s: 1,000/s at night, 4,000/s at noon."""
    return 1000 + 3000 * (1 - math.cos(2 * math.pi * t / SEASON)) / 2


def test_seasonal_forecast_is_accurate_and_beats_the_rate_now() -> None:
    forecaster = LoadForecaster(policy_of(predictive=predictive()).predictive)  # type: ignore[arg-type]
    noise = random.Random(7)
    t = 0.0
    while t < 3 * SEASON:
        forecaster.observe(T0 + t, seasonal_rate(t) * (1 + noise.gauss(0, 0.03)))
        t += STEP
    errors, naive = [], []
    for now in [3 * SEASON + k * STEP for k in range(0, 96)]:
        forecaster.observe(T0 + now, seasonal_rate(now) * (1 + noise.gauss(0, 0.03)))
        for ahead in (9.0, 21.0):
            actual = seasonal_rate(now + ahead)
            errors.append(abs(forecaster.forecast(T0 + now, ahead) - actual) / actual)  # type: ignore[operator]
            naive.append(abs(seasonal_rate(now) - actual) / actual)
    mape = sum(errors) / len(errors)
    assert mape < 0.04
    assert mape < 0.5 * sum(naive) / len(naive)


def test_without_a_season_the_forecast_follows_the_trend() -> None:
    forecaster = LoadForecaster(policy_of(predictive=predictive()).predictive)  # type: ignore[arg-type]
    for k in range(11):
        forecaster.observe(T0 + k * STEP, 1000.0 + 50.0 * k * STEP)
    now = T0 + 10 * STEP
    assert forecaster.seasonal(now, 10.0) is None
    assert forecaster.forecast(now, 10.0) == pytest.approx(2500.0 + 500.0)
    assert forecaster.peak(now) == pytest.approx(2500.0 + 50.0 * 20)


def test_the_forecast_never_goes_below_the_rate_now() -> None:
    forecaster = LoadForecaster(policy_of(predictive=predictive()).predictive)  # type: ignore[arg-type]
    for k in range(11):
        forecaster.observe(T0 + k * STEP, 3000.0 - 80.0 * k * STEP)
    assert forecaster.peak(T0 + 10 * STEP) == pytest.approx(3000.0 - 80.0 * 30)


def test_predictive_rule_takes_the_utilisation_rules_place() -> None:
    policy = policy_of(predictive=predictive())
    quiet = Observation(current=2, cpu_percent=10.0, total_lag=0, partitions=6)
    # No forecast yet: the CPU policy scales down, ceil(2 * 10 / 30) = 1.
    assert recommend(policy, quiet).replicas == 1
    ahead = Observation(
        current=2, cpu_percent=10.0, total_lag=0, partitions=6, forecast_records_in_per_s=2800
    )
    rec = recommend(policy, ahead)
    assert rec.metric == "forecast"
    assert rec.replicas == 4  # ceil(2,800 / 700)
    assert "ceil(2800 / 700) = 4" in rec.reason
    near = Observation(current=4, forecast_records_in_per_s=2900)
    assert predictive_recommendation(policy, near).replicas == 4  # type: ignore[union-attr]
    assert predictive_recommendation(policy_of(), ahead) is None


def test_the_lag_rule_still_wins_over_a_low_forecast() -> None:
    policy = policy_of(predictive=predictive())
    obs = Observation(current=1, total_lag=2400, partitions=6, forecast_records_in_per_s=100)
    rec = recommend(policy, obs)
    assert (rec.metric, rec.replicas) == ("lag", 5)


def test_controller_forecasts_the_arrivals_not_only_what_was_served() -> None:
    controller = ScalingController(policy_of(predictive=predictive()))
    for k in range(6):
        now = T0 + k * STEP
        controller.observe_sample(
            {"kind": "sample", "source": "w0", "ts": now, "records_in_per_s": 700.0}
        )
        # The one worker serves 700/s while the lag grows by 700/s: 1,400/s arrive.
        decision = controller.evaluate(now, 1, partitions=6, group_lag=700.0 * k * STEP)
    assert decision.metric in {"forecast", "lag"}
    assert decision.recommended is not None
    assert decision.recommended >= 2


def test_predictive_section_is_checked_and_off_in_the_shipped_policy() -> None:
    with pytest.raises(ConfigError, match="step_s"):
        policy_of(predictive=predictive(step_s=60, horizon_s=20))
    with pytest.raises(ConfigError, match="records_per_replica"):
        policy_of(predictive={"season_s": 60})
    assert load_policy().predictive is None


def step_day(t: int) -> float:
    """A known daily pattern: 500/s, then 3,000/s from second 150 to 250 of each 288 s day."""
    return 3000.0 if 150 <= t % 288 < 250 else 500.0


def test_scale_up_happens_before_the_load_arrives_on_a_known_daily_pattern() -> None:
    workers = WorkerModel(capacity=1000.0, startup_s=6.0, rebalance_pause_s=0.5)
    rates = [step_day(t) for t in range(4 * 288)]
    jump = 3 * 288 + 150  # the last day's rise
    ahead = simulate(
        rates,
        workers,
        policy=policy_of(predictive=predictive(horizon_s=20, records_per_replica=750)),
        keep_series=True,
    )
    reactive = simulate(rates, workers, policy=policy_of(), keep_series=True)
    assert ahead.workers[jump - 1] >= 4  # started before the rise, ready when it comes
    assert reactive.workers[jump - 1] <= 2
    last_day = slice(3 * 288, 4 * 288)
    above_ahead = sum(lat > 1.0 for lat in ahead.latency_s[last_day])
    above_reactive = sum(lat > 1.0 for lat in reactive.latency_s[last_day])
    assert above_ahead < above_reactive
