"""HTM's anomaly likelihood step and the novelty-likelihood detector built on it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lakecast.monitoring.detectors import make_detector
from lakecast.monitoring.detectors.likelihood import (
    RED,
    YELLOW,
    AnomalyLikelihood,
    NoveltyLikelihoodDetector,
)


def stamps(n: int) -> np.ndarray:
    return 1.7e9 + 300.0 * np.arange(n, dtype=float)


def log_score(p: float) -> float:
    return -math.log10(p + 1e-10) / 10.0


def test_likelihood_is_silent_while_learning_and_estimating() -> None:
    likelihood = AnomalyLikelihood(learn=20, estimate=30)
    scores = [likelihood.score(1.0 if i % 7 == 0 else 0.0) for i in range(50)]
    assert scores == [0.0] * 50


def test_a_steady_raw_score_has_an_unremarkable_likelihood() -> None:
    rng = np.random.default_rng(2)
    likelihood = AnomalyLikelihood(learn=50, estimate=50)
    scores = [likelihood.score(float(rng.random() < 0.1)) for _ in range(2000)]
    # Ten raw alarms in a row would be news; one in ten, as always, is not.
    assert max(scores[100:]) < 0.5


def test_a_sustained_rise_raises_one_red_alarm_then_yellow() -> None:
    likelihood = AnomalyLikelihood(learn=50, estimate=50)
    quiet = [likelihood.score(0.0) for _ in range(500)]
    loud = [likelihood.score(1.0) for _ in range(10)]
    assert max(quiet) < 0.1
    first = next(i for i, s in enumerate(loud) if s >= 0.5)
    assert loud[first] >= log_score(RED)
    # The red points right after the first report the yellow level, not a second page.
    assert all(s == pytest.approx(log_score(YELLOW)) for s in loud[first + 1 :])


def test_likelihood_refuses_a_bad_setting() -> None:
    with pytest.raises(ValueError, match="average"):
        AnomalyLikelihood(average=0)


def test_a_value_past_the_range_seen_scores_by_how_far_past() -> None:
    t = np.arange(500, dtype=float)
    values = 10.0 + np.sin(t / 5.0)
    top, span = values[:300].max(), np.ptp(values[:300])
    values[300] = top + 0.1 * span  # 10 % of the range above the top: past the 5 % tolerance
    values[350] = top + 0.03 * span  # 3 % above (of the range now 10 % wider): inside it
    values[400] = top + 2.5 * span  # more than a whole range above: the top score
    scores = NoveltyLikelihoodDetector(learn=50).score_series(stamps(t.size), values)
    assert scores[300] == pytest.approx(0.5 + 0.5 * 0.1)
    assert scores[350] < 0.5
    assert scores[400] == 1.0


def test_no_spatial_alarm_while_the_range_is_being_learned() -> None:
    values = np.arange(60, dtype=float)  # every point is a new maximum
    scores = NoveltyLikelihoodDetector(learn=100).score_series(stamps(values.size), values)
    assert scores.max() == 0.0


def test_a_new_rhythm_inside_the_usual_range_is_found_by_the_likelihood() -> None:
    rng = np.random.default_rng(4)
    n = 1500
    t = np.arange(n, dtype=float)
    values = np.sin(2 * np.pi * t / 24) + 0.05 * rng.standard_normal(n)
    values[1200:1260] = np.sin(2 * np.pi * t[1200:1260] / 5)  # same range, faster cycle
    scores = make_detector("novelty_likelihood", learn=150).score_series(stamps(n), values)
    assert scores[600:1200].max() < 0.5
    assert scores[1200:1260].max() >= 0.5
