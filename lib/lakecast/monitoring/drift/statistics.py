"""Per-feature drift statistics between a reference (training) sample and a live sample.

PSI (population stability index) over bins cut at the reference's quantiles, so each bin holds
about the same share of the training rows; a feature with at most ``bins`` distinct reference
values (flags, one-hot columns) is binned by value instead, with one more bin for values the
reference never took. KS is the two-sample Kolmogorov-Smirnov statistic: the largest gap
between the two empirical CDFs. Non-finite values are left out of both (the invariants count
them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from lakecast.errors import DataError

# An empty bin's share: PSI's log ratio is undefined at 0 (the usual floor in practice).
EMPTY_BIN_SHARE = 1e-4


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's drift verdict."""

    feature: str
    psi: float
    ks: float
    psi_threshold: float
    ks_threshold: float
    reference_rows: int
    rows: int  # live rows compared

    @property
    def drifted(self) -> bool:
        return self.psi > self.psi_threshold or self.ks > self.ks_threshold


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, np.float64)
    return values[np.isfinite(values)]


def bin_shares(reference: np.ndarray, live: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """The share of each sample in each PSI bin (see the module docstring), reference first."""
    distinct = np.unique(reference)
    if distinct.size <= bins:
        # By value; the last bin takes live values the reference never had.
        index_ref = np.searchsorted(distinct, reference)
        position = np.minimum(np.searchsorted(distinct, live), distinct.size - 1)
        index_live = np.where(distinct[position] == live, position, distinct.size)
        size = distinct.size + 1
    else:
        inner = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
        index_ref = np.searchsorted(inner, reference, side="right")
        index_live = np.searchsorted(inner, live, side="right")
        size = inner.size + 1
    expected = np.bincount(index_ref, minlength=size) / reference.size
    actual = np.bincount(index_live, minlength=size) / live.size
    return expected, actual


def psi(reference: np.ndarray, live: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``live`` against ``reference`` (0: the same shares)."""
    reference, live = _finite(reference), _finite(live)
    _need(reference, live)
    expected, actual = bin_shares(reference, live, bins)
    expected = np.maximum(expected, EMPTY_BIN_SHARE)
    actual = np.maximum(actual, EMPTY_BIN_SHARE)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def ks_statistic(reference: np.ndarray, live: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: max |F_reference(x) - F_live(x)|."""
    reference, live = np.sort(_finite(reference)), np.sort(_finite(live))
    _need(reference, live)
    points = np.concatenate([reference, live])
    gap = (
        np.searchsorted(reference, points, side="right") / reference.size
        - np.searchsorted(live, points, side="right") / live.size
    )
    return float(np.max(np.abs(gap)))


def _need(reference: np.ndarray, live: np.ndarray) -> None:
    if reference.size == 0 or live.size == 0:
        msg = (
            f"drift: need finite values on both sides, found {reference.size} reference and "
            f"{live.size} live"
        )
        raise DataError(msg)


def compare_features(
    reference: Mapping[str, np.ndarray],
    live: Mapping[str, np.ndarray],
    *,
    psi_threshold: float,
    ks_threshold: float,
    bins: int,
) -> list[FeatureDrift]:
    """PSI and KS for each feature of ``live``, in its order.

    Raises:
        DataError: a live feature the reference lacks, or a side with no finite value.
    """
    missing = [name for name in live if name not in reference]
    if missing:
        msg = f"drift: the reference (training set) has no column for features {missing}"
        raise DataError(msg)
    results = []
    for name, values in live.items():
        try:
            statistic_psi = psi(reference[name], values, bins)
            statistic_ks = ks_statistic(reference[name], values)
        except DataError as exc:
            msg = f"drift: feature {name!r}: {exc}"
            raise DataError(msg) from exc
        results.append(
            FeatureDrift(
                feature=name,
                psi=statistic_psi,
                ks=statistic_ks,
                psi_threshold=psi_threshold,
                ks_threshold=ks_threshold,
                reference_rows=int(np.isfinite(reference[name]).sum()),
                rows=int(np.isfinite(values).sum()),
            )
        )
    return results
