"""Holdout metrics of a purchase-propensity model: ranking, log loss and calibration.

A propensity score is used both to rank (ROC AUC) and as a probability (a budget multiplies
it), so the registry records how well it ranks *and* how honest its probabilities are:
log loss, the Brier score and the expected calibration error over equal-width bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lakecast.errors import DataError

CALIBRATION_BINS = 10
_EPS = 1e-7


@dataclass(frozen=True)
class HoldoutMetrics:
    """Metrics on a holdout; ``as_dict`` is what the registry stores (all finite floats)."""

    roc_auc: float
    log_loss: float
    brier: float
    ece: float
    positive_rate: float
    mean_score: float
    rows: int

    def as_dict(self, prefix: str = "holdout_") -> dict[str, float]:
        return {
            f"{prefix}roc_auc": self.roc_auc,
            f"{prefix}log_loss": self.log_loss,
            f"{prefix}brier": self.brier,
            f"{prefix}ece": self.ece,
            f"{prefix}positive_rate": self.positive_rate,
            f"{prefix}mean_score": self.mean_score,
            f"{prefix}rows": float(self.rows),
        }


def expected_calibration_error(
    labels: np.ndarray, scores: np.ndarray, bins: int = CALIBRATION_BINS
) -> float:
    """ECE: the row-weighted mean of |mean score - positive rate| over equal-width score bins."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins).astype(np.float64)
    score_sums = np.bincount(index, weights=scores, minlength=bins)
    label_sums = np.bincount(index, weights=labels, minlength=bins)
    filled = counts > 0
    gaps = np.abs(score_sums[filled] - label_sums[filled]) / counts[filled]
    return float((gaps * counts[filled]).sum() / counts.sum())


def evaluate(labels: np.ndarray, scores: np.ndarray, where: str = "holdout") -> HoldoutMetrics:
    """Score ``scores`` (probabilities of label 1) against 0/1 ``labels``.

    Raises:
        DataError: the arrays differ in length, a score is not a finite probability, or the
            labels hold a single class (AUC is undefined then).
    """
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        msg = f"evaluate {where}: {y.shape[0]} labels but {p.shape[0]} scores"
        raise DataError(msg)
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        msg = f"evaluate {where}: scores must be finite probabilities in [0, 1]"
        raise DataError(msg)
    classes = np.unique(y)
    if classes.size != 2:
        msg = f"evaluate {where}: labels hold the classes {classes.tolist()}; need both 0 and 1"
        raise DataError(msg)
    clipped = np.clip(p, _EPS, 1 - _EPS)
    return HoldoutMetrics(
        roc_auc=float(roc_auc_score(y, p)),
        log_loss=float(log_loss(y, clipped, labels=[0.0, 1.0])),
        brier=float(brier_score_loss(y, p)),
        ece=expected_calibration_error(y, p),
        positive_rate=float(y.mean()),
        mean_score=float(p.mean()),
        rows=int(y.shape[0]),
    )
