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


class MaxEnsemble(BaseDetector):
    """The largest of the members' weighted scores, plus a small share of their mean.

    Different detectors are sure about different anomalies (a spike, a new pattern): the
    maximum lets whichever is surest speak. The ``tie`` share of the mean breaks the ties
    of a detector with few distinct scores, so one threshold can still rank its alarms.
    """

    name = "max_ensemble"

    def __init__(
        self, members: Sequence[Detector], weights: Sequence[float] | None = None, tie: float = 0.0
    ) -> None:
        if not members:
            msg = "max ensemble detector: needs at least one member"
            raise ValueError(msg)
        self.members = list(members)
        self.weights = list(weights) if weights is not None else [1.0] * len(self.members)
        self.tie = tie

    def _update(self, ts: float, value: float) -> float:
        scores = [w * m.update(ts, value) for w, m in zip(self.weights, self.members, strict=True)]
        return (1.0 - self.tie) * max(scores) + self.tie * sum(scores) / len(scores)
