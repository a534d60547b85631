"""Gaussian tail probability of the value and of its change, against a trailing window.

The surprise is ``-log10`` of the two-sided Gaussian tail probability of the value's
z-score (and, with ``use_diff``, of the first difference's), with mean and spread of the
trailing ``window`` points. It is mapped to ``q / (q + half)`` so the score keeps ranking
extreme points instead of saturating at 1.0 (``erf`` does beyond eight sigmas, and ties at
1.0 leave the threshold nothing to choose between).
"""

from __future__ import annotations

import math

import numpy as np

from lakecast.monitoring.detectors.base import BaseDetector
from lakecast.monitoring.detectors.calibration import RingBuffer


def tail_surprise(z: float) -> float:
    """``-log10`` of the two-sided Gaussian tail of ``z``, exact far into the tail."""
    z = abs(z)
    if z < 30.0:
        return -math.log10(max(math.erfc(z / math.sqrt(2.0)), 1e-300))
    # Asymptotic: erfc(x) ~ exp(-x^2) / (x sqrt(pi)).
    x = z / math.sqrt(2.0)
    return (x * x + math.log(x * math.sqrt(math.pi))) / math.log(10.0)


class _Moments:
    """Mean and standard deviation of a trailing window, or median and scaled MAD."""

    def __init__(self, window: int, robust: bool) -> None:
        self._buffer = RingBuffer(window)
        self.robust = robust

    def __len__(self) -> int:
        return len(self._buffer)

    def z(self, value: float, floor: float) -> float:
        data = self._buffer.values()
        if self.robust:
            centre = float(np.median(data))
            spread = 1.4826 * float(np.median(np.abs(data - centre)))
        else:
            centre = float(data.mean())
            spread = float(data.std())
        return (value - centre) / max(spread, floor)

    def append(self, value: float) -> None:
        self._buffer.append(value)


class GaussianTailDetector(BaseDetector):
    """Tail surprise of the value (and its change) against the trailing window."""

    name = "gaussian_tail"

    def __init__(
        self,
        window: int = 2000,
        use_diff: bool = True,
        robust: bool = False,
        half: float = 10.0,
        warmup: int = 30,
    ) -> None:
        self.half = half
        self.warmup = warmup
        self.use_diff = use_diff
        self._values = _Moments(window, robust)
        self._diffs = _Moments(window, robust)
        self._last: float | None = None
        self._floor = 1e-9

    def _update(self, ts: float, value: float) -> float:
        diff = value - self._last if self._last is not None else 0.0
        # A spread floor relative to the series' magnitude, so a flat line's first wiggle
        # is not infinitely surprising.
        self._floor = max(self._floor, 1e-6 * abs(value))
        surprise = 0.0
        if len(self._values) >= self.warmup:
            surprise = tail_surprise(self._values.z(value, self._floor))
            if self.use_diff:
                surprise = max(surprise, tail_surprise(self._diffs.z(diff, self._floor)))
        self._values.append(value)
        if self._last is not None:
            self._diffs.append(diff)
        self._last = value
        return surprise / (surprise + self.half)
