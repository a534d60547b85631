"""The baseline: scikit-learn's IsolationForest over a few windowed features.

Features per point: the value, its first difference, and its z-score within the last 12
points. The forest is refitted every ``refit_every`` points on the trailing ``train_size``
feature rows, so a point is always scored by a forest fitted on earlier points only.
Before the first fit the score is 0.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from lakecast.monitoring.detectors.base import BaseDetector, FloatArray


class IsolationForestDetector(BaseDetector):
    """Causal IsolationForest; the score is the paper's ``s(x, n)`` (``-score_samples``)."""

    name = "isolation_forest"

    def __init__(
        self,
        refit_every: int = 250,
        train_size: int = 2000,
        z_window: int = 12,
        n_estimators: int = 100,
        seed: int = 0,
    ) -> None:
        self.refit_every = refit_every
        self.train_size = train_size
        self.z_window = z_window
        self.n_estimators = n_estimators
        self.seed = seed
        self._recent: deque[float] = deque(maxlen=z_window)
        self._features: deque[tuple[float, float, float]] = deque(maxlen=train_size)
        self._seen = 0
        self._model: Any = None

    def _featurise(self, value: float) -> tuple[float, float, float]:
        previous = self._recent[-1] if self._recent else value
        self._recent.append(value)
        window = np.fromiter(self._recent, dtype=np.float64)
        std = float(window.std())
        z = (value - float(window.mean())) / std if std > 0 else 0.0
        return (value, value - previous, z)

    def _refit(self) -> None:
        """Refit on the trailing rows; called after every ``refit_every``-th point."""
        from sklearn.ensemble import IsolationForest

        model = IsolationForest(n_estimators=self.n_estimators, random_state=self.seed)
        self._model = model.fit(np.asarray(self._features, dtype=np.float64))

    def _update(self, ts: float, value: float) -> float:
        row = self._featurise(value)
        score = 0.0
        if self._model is not None:
            score = float(-self._model.score_samples(np.asarray([row]))[0])
        self._features.append(row)
        self._seen += 1
        if self._seen % self.refit_every == 0:
            self._refit()
        return score

    def score_series(self, timestamps: Sequence[float], values: Sequence[float]) -> FloatArray:
        """Same scores as ``update`` per point, but one ``score_samples`` call per refit block."""
        out = np.zeros(len(values), dtype=np.float64)
        start = 0
        while start < len(values):
            # Points until the next refit are scored by the current model, in one call.
            block = self.refit_every - (self._seen % self.refit_every)
            stop = min(len(values), start + block)
            rows, slots = [], []
            refit_due = False
            for i in range(start, stop):
                value = float(values[i])
                if not np.isfinite(value):
                    continue
                row = self._featurise(value)
                rows.append(row)
                slots.append(i)
                self._features.append(row)
                self._seen += 1
                if self._seen % self.refit_every == 0:
                    refit_due = True
                    break
            if rows and self._model is not None:
                scores = -self._model.score_samples(np.asarray(rows, dtype=np.float64))
                out[slots] = np.clip(scores, 0.0, 1.0)
            stop = slots[-1] + 1 if slots else stop
            if refit_due:
                self._refit()
            start = stop
        return out
