"""The outcome metrics against scikit-learn's, and the drop check against the holdout."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from lakecast.config import QualityDrops
from lakecast.errors import DataError, InvalidRecordError
from lakecast.models.evaluation import expected_calibration_error as holdout_ece
from lakecast.quality import metrics
from lakecast.quality.outcomes import last_settled_day
from lakecast.quality.records import check_quality_record, quality_drops

pytestmark = pytest.mark.unit


def _sample(seed: int, rows: int = 2_000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = rng.beta(2, 5, rows)
    labels = (rng.random(rows) < scores).astype(np.float64)
    return labels, scores


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_scikit_learn(seed: int) -> None:
    labels, scores = _sample(seed)
    scores[:50] = np.round(scores[:50], 1)  # ties
    figures = metrics.quality_figures(labels, scores)
    assert figures.auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    clipped = np.clip(scores, metrics.EPS, 1 - metrics.EPS)
    assert figures.log_loss == pytest.approx(log_loss(labels, clipped), rel=1e-12)
    assert figures.brier == pytest.approx(brier_score_loss(labels, scores), rel=1e-12)
    assert figures.ece == pytest.approx(holdout_ece(labels, scores), abs=1e-12)
    assert figures.base_rate == pytest.approx(labels.mean())
    assert figures.count == labels.size
    assert sum(figures.reliability.counts) == labels.size


def test_reliability_bins_match_scikit_learns_curve() -> None:
    # Scores off the bin edges: scikit-learn closes a bin on the right, the registry's ECE
    # (and so ours) on the left; away from the edges the bins are the same.
    labels, scores = _sample(3)
    bins = metrics.reliability_bins(labels, scores)
    true_rate, mean_score = calibration_curve(labels, scores, n_bins=10, strategy="uniform")
    filled = np.asarray(bins.counts) > 0  # scikit-learn drops empty bins; ours are NaN
    assert np.isnan(np.asarray(bins.mean_score)[~filled]).all()
    assert np.asarray(bins.positive_rate)[filled] == pytest.approx(true_rate)
    assert np.asarray(bins.mean_score)[filled] == pytest.approx(mean_score)


def test_auc_is_none_for_one_class_and_bad_input_is_named() -> None:
    assert metrics.roc_auc([0, 0, 0], [0.1, 0.2, 0.3]) is None
    with pytest.raises(DataError, match="2 labels but 3 scores"):
        metrics.quality_figures([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(DataError, match="labels must be 0 or 1"):
        metrics.quality_figures([0, 2], [0.1, 0.2])
    with pytest.raises(DataError, match="finite probabilities"):
        metrics.quality_figures([0, 1], [0.1, float("nan")])
    with pytest.raises(DataError, match="no rows"):
        metrics.quality_figures([], [])


def test_label_horizon_settles_a_day_after_it_ended() -> None:
    delay = timedelta(hours=1)
    assert last_settled_day(datetime(2026, 1, 3, 0, 59, tzinfo=UTC), delay) == date(2026, 1, 1)
    assert last_settled_day(datetime(2026, 1, 3, 1, 0, tzinfo=UTC), delay) == date(2026, 1, 2)
    with pytest.raises(ValueError, match="no time zone"):
        last_settled_day(datetime(2026, 1, 3), delay)  # noqa: DTZ001 - the case under test


def _record(**overrides: object) -> dict[str, object]:
    record: dict[str, object] = {
        "model": "purchase",
        "version": "1.1.0",
        "variant": "default",
        "day": "2026-01-05",
        "auc": 0.70,
        "log_loss": 0.30,
        "brier": 0.08,
        "ece": 0.02,
        "base_rate": 0.1,
        "count": 1_000,
        "holdout": {"auc": 0.80, "log_loss": 0.25, "brier": 0.07, "ece": 0.01},
    }
    return record | overrides


def test_quality_drops_compare_with_the_versions_holdout() -> None:
    drops = quality_drops(_record(), QualityDrops())
    assert [d.metric for d in drops] == ["auc"]  # 0.10 below; log loss +0.05 is within 0.10
    assert drops[0].change == pytest.approx(-0.10)
    assert "auc 0.7000 against holdout 0.8000" in drops[0].describe()
    strict = QualityDrops(auc=0.2, log_loss=0.01, brier=0.02, ece=0.05)
    assert [d.metric for d in quality_drops(_record(), strict)] == ["log_loss"]
    assert quality_drops(_record(count=10), QualityDrops(), min_count=200) == []
    assert quality_drops(_record(auc=None), QualityDrops()) == []  # one-class day


def test_a_quality_record_missing_a_field_is_named() -> None:
    check_quality_record(_record())
    broken = _record()
    del broken["brier"]
    with pytest.raises(InvalidRecordError, match="'brier' is missing"):
        check_quality_record(broken)
    with pytest.raises(InvalidRecordError, match="'ece' must be a number"):
        check_quality_record(_record(ece="high"))
