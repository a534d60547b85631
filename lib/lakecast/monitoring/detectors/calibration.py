"""Turning raw surprise into comparable scores, and quieting repeated alarms.

A raw surprise (a distance, a z-score) means different things on different series; one
threshold for every series needs scores on one scale. ``ConformalCalibrator`` ranks the new
surprise among the trailing ones (a conformal p-value), so ``1 - p`` is uniform on normal
data whatever the raw scale. (A Numenta-style anomaly likelihood over the Gaussian tail
surprise scored 32 standard on NAB; over contextual novelty, the kind of raw score HTM
feeds it, it is the default detector: see likelihood.py.)

``RestPeriod`` wraps a detector so that after an alarm the following points report only a
higher surprise: an anomaly raises one alarm, not hundreds.
"""

from __future__ import annotations

import numpy as np

from lakecast.monitoring.detectors.base import BaseDetector, Detector, FloatArray


class RingBuffer:
    """A fixed-capacity float buffer; ``values()`` is a view of what it holds (any order)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            msg = f"ring buffer: capacity must be >= 1, got {capacity}"
            raise ValueError(msg)
        self._data = np.zeros(capacity, dtype=np.float64)
        self._next = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, value: float) -> None:
        self._data[self._next] = value
        self._next = (self._next + 1) % self._data.size
        self._size = min(self._size + 1, self._data.size)

    def values(self) -> FloatArray:
        return self._data[: self._size]

    def ordered(self) -> FloatArray:
        """The held values oldest first."""
        if self._size < self._data.size:
            return self._data[: self._size]
        return np.concatenate([self._data[self._next :], self._data[: self._next]])


class ConformalCalibrator:
    """``1 - p`` where p is the share of the trailing surprises at least as large as this one."""

    def __init__(self, size: int = 1000, warmup: int = 50) -> None:
        self._history = RingBuffer(size)
        self.warmup = warmup

    def score(self, surprise: float) -> float:
        history = self._history.values()
        n = history.size
        self._history.append(surprise)
        if n < self.warmup:
            return 0.0
        at_least = int(np.count_nonzero(history >= surprise))
        return 1.0 - (at_least + 1) / (n + 1)


class RestPeriod(BaseDetector):
    """After a score reaches ``alarm``, report only scores above the alarm's for ``rest`` points.

    Inside the rest period a score that does not beat the one that raised the alarm is
    reported as a fraction (``quiet``) of itself: the detector stays causal, stays ranked,
    and a long anomaly is one alarm rather than a string of false positives after it.
    """

    def __init__(
        self, inner: Detector, rest: int = 100, alarm: float = 0.99, quiet: float = 0.5
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.rest = rest
        self.alarm = alarm
        self.quiet = quiet
        self._since_alarm = rest
        self._alarm_score = 1.0

    def _update(self, ts: float, value: float) -> float:
        score = self.inner.update(ts, value)
        self._since_alarm += 1
        if self._since_alarm <= self.rest and score <= self._alarm_score:
            return score * self.quiet
        if score >= self.alarm:
            self._since_alarm = 0
            self._alarm_score = score
        return score
