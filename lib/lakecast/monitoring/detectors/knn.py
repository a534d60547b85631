"""KNN conformal anomaly detection (in the manner of Burnaev and Ishimtsev's KNN-CAD).

Each point is embedded with the ``dim - 1`` points before it as a short trajectory. Its
surprise (non-conformity) is the mean distance to its ``k`` nearest trajectories among the
trailing ``history`` ones; the score is the conformal rank of that surprise among the
trailing surprises. A pattern never seen before (a missing daily bump, a flattened cycle,
a level shift) is far from every past trajectory, whatever its value.
"""

from __future__ import annotations

import numpy as np

from lakecast.monitoring.detectors.base import BaseDetector
from lakecast.monitoring.detectors.calibration import ConformalCalibrator, RingBuffer


class KnnConformalDetector(BaseDetector):
    """Conformal k-nearest-neighbour surprise of the latest ``dim``-point trajectory."""

    name = "knn_cad"

    def __init__(
        self,
        dim: int = 12,
        k: int = 5,
        history: int = 1000,
        calibration: int = 1000,
        warmup: int = 100,
    ) -> None:
        self.dim = dim
        self.k = k
        self.history = history
        self._recent = RingBuffer(dim)
        self._trajectories = np.zeros((history, dim), dtype=np.float64)
        self._stored = 0
        self._pending: list[np.ndarray] = []
        self._calibrator = ConformalCalibrator(calibration, warmup=warmup)
        self._scale = RingBuffer(history)

    def _update(self, ts: float, value: float) -> float:
        self._recent.append(value)
        self._scale.append(value)
        if len(self._recent) < self.dim:
            return 0.0
        trajectory = self._recent.ordered().copy()
        n = min(self._stored, self.history)
        score = 0.0
        if n >= self.k:
            scale = float(np.std(self._scale.values())) or 1.0
            diffs = (self._trajectories[:n] - trajectory) / scale
            distances = np.sqrt(np.einsum("ij,ij->i", diffs, diffs))
            nearest = np.partition(distances, self.k - 1)[: self.k]
            score = self._calibrator.score(float(nearest.mean()))
        # Overlapping trajectories are near-copies of this one; store with a lag of ``dim``.
        self._pending.append(trajectory)
        if len(self._pending) > self.dim:
            self._trajectories[self._stored % self.history] = self._pending.pop(0)
            self._stored += 1
        return score
