"""Outcome metrics of probability scores, in plain numpy (no scikit-learn at run time).

The quality job computes them per model version, variant and day inside Spark's Python
workers, where importing scikit-learn for four formulas costs more than the formulas. Each
function is checked against scikit-learn's in the unit tests (AUC, log loss, Brier); ECE and
the reliability bins use the same equal-width bins as the registry's holdout figures
(:mod:`lakecast.models.evaluation`), so a live ECE compares with a holdout ECE.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lakecast.errors import DataError
from lakecast.models.evaluation import CALIBRATION_BINS

# Scores are clipped to [EPS, 1 - EPS] for log loss, as in models.evaluation.
EPS = 1e-7
METRIC_NAMES = ("auc", "log_loss", "brier", "ece")
"""The figures a quality record carries and the monitor compares with the holdout's."""
HOLDOUT_KEYS = {
    "auc": "holdout_roc_auc",
    "log_loss": "holdout_log_loss",
    "brier": "holdout_brier",
    "ece": "holdout_ece",
}
"""Where the registry keeps a version's holdout value of each metric."""
HIGHER_IS_BETTER = {"auc": True, "log_loss": False, "brier": False, "ece": False}


@dataclass(frozen=True)
class ReliabilityBins:
    """Equal-width score bins over [0, 1]: rows, mean score and positive rate per bin
    (NaN for an empty bin)."""

    counts: list[int]
    mean_score: list[float]
    positive_rate: list[float]


@dataclass(frozen=True)
class QualityFigures:
    """The outcome metrics of one group of predictions. ``auc`` is None with one class."""

    count: int
    base_rate: float
    auc: float | None
    log_loss: float
    brier: float
    ece: float
    reliability: ReliabilityBins


def _checked(labels: npt.ArrayLike, scores: npt.ArrayLike, where: str) -> tuple[np.ndarray, ...]:
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        msg = f"{where}: {y.shape[0]} labels but {p.shape[0]} scores"
        raise DataError(msg)
    if y.size == 0:
        msg = f"{where}: no rows"
        raise DataError(msg)
    if not np.isin(y, (0.0, 1.0)).all():
        msg = f"{where}: labels must be 0 or 1, found {np.unique(y[~np.isin(y, (0.0, 1.0))])[:5]}"
        raise DataError(msg)
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        msg = f"{where}: scores must be finite probabilities in [0, 1]"
        raise DataError(msg)
    return y, p


def roc_auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float | None:
    """ROC AUC by the rank-sum (Mann-Whitney) identity, ties counted half; None with one class."""
    y, p = _checked(labels, scores, "roc_auc")
    positives = int(y.sum())
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(p, kind="mergesort")
    sorted_scores = p[order]
    ranks = np.empty(p.size, dtype=np.float64)
    # Average ranks over runs of equal scores (1-based).
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], p.size]
    average = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(average, ends - starts)
    rank_sum = ranks[y == 1.0].sum()
    return float((rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives))


def log_loss(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Mean negative log-likelihood of the labels, scores clipped to [EPS, 1 - EPS]."""
    y, p = _checked(labels, scores, "log_loss")
    return float(np.mean(row_log_loss(y, p)))


def row_log_loss(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Each row's negative log-likelihood (the canary compares these between variants)."""
    clipped = np.clip(np.asarray(scores, dtype=np.float64), EPS, 1 - EPS)
    y = np.asarray(labels, dtype=np.float64)
    return -(y * np.log(clipped) + (1 - y) * np.log1p(-clipped))


def brier(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Mean squared difference between score and label."""
    y, p = _checked(labels, scores, "brier")
    return float(np.mean((p - y) ** 2))


def reliability_bins(
    labels: npt.ArrayLike, scores: npt.ArrayLike, bins: int = CALIBRATION_BINS
) -> ReliabilityBins:
    """Rows, mean score and positive rate per equal-width score bin (a score of 1 is in the
    last bin)."""
    y, p = _checked(labels, scores, "reliability_bins")
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    score_sums = np.bincount(index, weights=p, minlength=bins)
    label_sums = np.bincount(index, weights=y, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.where(counts > 0, score_sums / counts, np.nan)
        positive_rate = np.where(counts > 0, label_sums / counts, np.nan)
    return ReliabilityBins(
        counts=[int(c) for c in counts],
        mean_score=[float(v) for v in mean_score],
        positive_rate=[float(v) for v in positive_rate],
    )


def expected_calibration_error(bins: ReliabilityBins) -> float:
    """ECE: the row-weighted mean of |mean score - positive rate| over the filled bins."""
    counts = np.asarray(bins.counts, dtype=np.float64)
    filled = counts > 0
    gaps = np.abs(np.asarray(bins.mean_score)[filled] - np.asarray(bins.positive_rate)[filled])
    return float((gaps * counts[filled]).sum() / counts.sum())


def quality_figures(
    labels: npt.ArrayLike, scores: npt.ArrayLike, bins: int = CALIBRATION_BINS
) -> QualityFigures:
    """Every outcome metric of one group of predictions.

    Raises:
        DataError: no rows, lengths differ, a label is not 0/1 or a score not a probability.
    """
    y, p = _checked(labels, scores, "quality figures")
    reliability = reliability_bins(y, p, bins)
    return QualityFigures(
        count=int(y.size),
        base_rate=float(y.mean()),
        auc=roc_auc(y, p),
        log_loss=log_loss(y, p),
        brier=brier(y, p),
        ece=expected_calibration_error(reliability),
        reliability=reliability,
    )
