"""The causal Detector protocol that every anomaly detector follows.

A detector sees one (timestamp, value) point at a time and returns an anomaly score in
[0, 1] for that point, using only the points it has already seen. That makes it usable
online per (source, metric) series by the monitor, and honest offline on a labelled file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@runtime_checkable
class Detector(Protocol):
    """A causal, incremental anomaly detector for one series."""

    name: str

    def update(self, ts: float, value: float) -> float:
        """Take the next point (epoch seconds, value); return its anomaly score in [0, 1]."""
        ...

    def score_series(self, timestamps: Sequence[float], values: Sequence[float]) -> FloatArray:
        """Feed a whole series point by point; the same scores as calling ``update`` on each."""
        ...


class BaseDetector:
    """Shared plumbing: NaN handling, clipping, and the point-by-point batch loop.

    Subclasses implement ``_update`` for finite values; a NaN or infinite value scores 0 and
    leaves the state untouched, so a gap in a metric does not look like an anomaly.
    """

    name = "base"

    def _update(self, ts: float, value: float) -> float:
        raise NotImplementedError

    def update(self, ts: float, value: float) -> float:
        if not math.isfinite(value):
            return 0.0
        score = self._update(float(ts), float(value))
        if not math.isfinite(score):
            return 0.0
        return min(1.0, max(0.0, score))

    def score_series(self, timestamps: Sequence[float], values: Sequence[float]) -> FloatArray:
        out = np.empty(len(values), dtype=np.float64)
        for i, (ts, value) in enumerate(zip(timestamps, values, strict=True)):
            out[i] = self.update(float(ts), float(value))
        return out
