"""Reference detectors that anchor the NAB table: null, random and NAB's windowed Gaussian."""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from lakecast.monitoring.detectors.base import BaseDetector


class NullDetector(BaseDetector):
    """A constant score: NAB's null detector, which normalises to 0."""

    name = "null"

    def __init__(self, level: float = 0.5) -> None:
        self.level = level

    def _update(self, ts: float, value: float) -> float:
        return self.level


class RandomDetector(BaseDetector):
    """Uniform random scores from a seeded stream: the chance level."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.default_rng(seed)

    def _update(self, ts: float, value: float) -> float:
        return float(self._rng.random())


class WindowedGaussianDetector(BaseDetector):
    """Two-sided Gaussian tail of the value against the trailing window's mean and std.

    As NAB's ``windowedGaussian``: the window fills up to ``window`` points, then slides by
    ``step`` points at a time; the score is ``erf(|z| / sqrt 2)``.
    """

    name = "windowed_gaussian"

    def __init__(self, window: int = 6400, step: int = 100) -> None:
        self.window = window
        self.step = step
        self._data: deque[float] = deque()
        self._pending: list[float] = []
        self._sum = 0.0
        self._sum_sq = 0.0
        self._mean = 0.0
        self._std = 0.0

    def _add(self, value: float, sign: float) -> None:
        self._sum += sign * value
        self._sum_sq += sign * value * value

    def _refresh(self) -> None:
        n = len(self._data)
        self._mean = self._sum / n
        self._std = math.sqrt(max(self._sum_sq / n - self._mean**2, 0.0))

    def _update(self, ts: float, value: float) -> float:
        score = 0.0
        if self._data:
            std = self._std if self._std > 0 else 1e-6
            score = math.erf(abs(value - self._mean) / std / math.sqrt(2.0))
        if len(self._data) < self.window:
            self._data.append(value)
            self._add(value, 1.0)
            self._refresh()
        else:
            self._pending.append(value)
            if len(self._pending) == self.step:
                for _ in range(self.step):
                    self._add(self._data.popleft(), -1.0)
                for pending in self._pending:
                    self._add(pending, 1.0)
                self._data.extend(self._pending)
                self._pending = []
                self._refresh()
        return score
