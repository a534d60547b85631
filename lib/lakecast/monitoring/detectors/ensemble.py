"""An ensemble: the weighted mean of several detectors' scores on the same point.

Value-level surprise (the tail) and pattern-level surprise (the KNN trajectories) miss
different anomalies; their mean ranks a point high when either is very sure and both
agree that something is off.
"""

from __future__ import annotations

from collections.abc import Sequence

from lakecast.monitoring.detectors.base import BaseDetector, Detector


class MeanEnsemble(BaseDetector):
    """Weighted mean of the members' scores (weights default to equal)."""

    name = "ensemble"

    def __init__(self, members: Sequence[Detector], weights: Sequence[float] | None = None) -> None:
        if not members:
            msg = "ensemble detector: needs at least one member"
            raise ValueError(msg)
        self.members = list(members)
        raw = list(weights) if weights is not None else [1.0] * len(self.members)
        total = sum(raw)
        self.weights = [w / total for w in raw]

    def _update(self, ts: float, value: float) -> float:
        return sum(w * m.update(ts, value) for w, m in zip(self.weights, self.members, strict=True))
