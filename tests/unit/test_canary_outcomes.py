"""Canary analysis on outcome metrics: opt-in, judged only after the label horizon."""

from __future__ import annotations

import numpy as np
import pytest

from lakecast.rollout.analysis import (
    OUTCOME_BRIER,
    OUTCOME_LOG_LOSS,
    MetricSpec,
    OutcomeAnalysis,
    analyse_canary,
    judged_metrics,
    outcome_samples,
)
from lakecast.rollout.controller import DEFAULT_METRICS, ControllerSettings

pytestmark = pytest.mark.unit


def _traffic(seed: int, rows: int, noise: float) -> dict[str, np.ndarray]:
    """Outcomes of one variant: the true probability, scored with ``noise`` on the logit."""
    rng = np.random.default_rng(seed)
    logit = rng.normal(-1.5, 1.2, rows)
    labels = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    scores = 1 / (1 + np.exp(-(logit + rng.normal(0, noise, rows))))
    return outcome_samples(labels, scores)


def test_outcome_samples_are_per_prediction_log_loss_and_squared_error() -> None:
    samples = outcome_samples([1, 0, 1], [0.8, 0.2, 0.5])
    assert samples[OUTCOME_LOG_LOSS] == pytest.approx(-np.log([0.8, 0.8, 0.5]))
    assert samples[OUTCOME_BRIER] == pytest.approx([0.04, 0.04, 0.25])
    with pytest.raises(ValueError, match="2 labels but 1 scores"):
        outcome_samples([1, 0], [0.5])


def test_outcome_metrics_are_judged_only_after_the_horizon() -> None:
    outcomes = OutcomeAnalysis(horizon_s=86_400)
    early, note = judged_metrics(DEFAULT_METRICS, outcomes, lasted_s=3_600)
    assert early == DEFAULT_METRICS
    assert note is not None and "less than the label horizon of 86400 s" in note
    late, note = judged_metrics(DEFAULT_METRICS, outcomes, lasted_s=90_000)
    assert [m.name for m in late[-2:]] == [OUTCOME_LOG_LOSS, OUTCOME_BRIER]
    assert note is None
    assert judged_metrics(DEFAULT_METRICS, None, lasted_s=1e9) == (DEFAULT_METRICS, None)


def test_a_rollout_plan_opts_in_through_its_controller_settings() -> None:
    assert ControllerSettings().outcomes is None
    opted = ControllerSettings.model_validate({"outcomes": {"horizon_s": 3_600}})
    assert opted.outcomes is not None and opted.outcomes.horizon_s == 3_600
    with pytest.raises(ValueError, match="metrics must be among"):
        OutcomeAnalysis(metrics=(MetricSpec(name="latency_ms"),))


def test_worse_predictions_fail_and_better_ones_pass_on_outcomes() -> None:
    metrics = OutcomeAnalysis().metrics
    champion = _traffic(0, 3_000, noise=0.3)
    worse = _traffic(1, 3_000, noise=2.0)
    better = _traffic(2, 3_000, noise=0.0)
    failed = analyse_canary(champion, worse, metrics)
    assert failed.verdict == "fail"
    assert {m.name: m.classification for m in failed.metrics}[OUTCOME_LOG_LOSS] == "high"
    passed = analyse_canary(champion, better, metrics)
    assert passed.verdict == "pass"
