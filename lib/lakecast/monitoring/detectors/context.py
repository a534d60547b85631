"""Contextual novelty: how much of what just happened has never happened in this context.

In the spirit of Smirnov's Contextual Anomaly Detector (CAD OSE, NAB's third-best
detector), re-derived here, not ported. The value is quantised into ``levels`` equal
steps over its range; the detector remembers, for every recent history of levels (the
last 1, 2, ... ``order`` levels), which levels have followed it. A point's novelty is the
share of those histories after which its level has never been seen. A familiar pattern,
however noisy, soon stops being novel; a new level, a missing bump or a changed rhythm is
novel at several orders at once.

Causality. The published CAD OSE quantises with the whole file's minimum and maximum,
which a live monitor cannot know. Here the range is what has been seen so far: the first
``learn`` points set it, and a point outside it widens it. Widening changes every level,
so the memory is then rebuilt from the last ``memory`` raw values, as if the wider range
had been known all along; without that rebuild every widening reads as a burst of
novelty (measured on NAB: about 7 points lower, standard profile). ``memory`` bounds the
cost of a rebuild; ``headroom`` widens the range past a new extreme so a steadily growing
metric rebuilds a few times rather than at every point (it costs about 1 NAB point at
0.1, so it is off by default).
"""

from __future__ import annotations

import math
from collections import deque

from lakecast.monitoring.detectors.base import BaseDetector


class ContextNoveltyDetector(BaseDetector):
    """Share of the recent level histories (orders 1..``order``) that never led to this level."""

    name = "context_novelty"

    def __init__(
        self,
        levels: int = 8,
        order: int = 3,
        learn: int = 150,
        memory: int = 5_000,
        headroom: float = 0.0,
        rest: int = 150,
        alarm: float = 1.0,
    ) -> None:
        if levels < 2 or order < 1 or learn < 2 or memory < learn:
            msg = (
                f"context novelty detector: needs levels >= 2, order >= 1, learn >= 2 and "
                f"memory >= learn; got levels={levels}, order={order}, learn={learn}, "
                f"memory={memory}"
            )
            raise ValueError(msg)
        self.levels = levels
        self.order = order
        self.learn = learn
        self.rest = rest
        self.alarm = alarm
        self.headroom = headroom
        self._values: deque[float] = deque(maxlen=memory)
        self._lo = math.inf
        self._hi = -math.inf
        self._step = 1.0
        self._history: deque[int] = deque(maxlen=order)
        self._followers: dict[tuple[int, ...], set[int]] = {}
        self._since_alarm = rest

    def _level(self, value: float) -> int:
        return math.floor((value - self._lo) / self._step)

    def _novelty(self, level: int) -> float:
        """Share of the current histories never followed by ``level``; remembers it after."""
        history = tuple(self._history)
        novel = 0
        for k in range(1, len(history) + 1):
            followers = self._followers.setdefault(history[-k:], set())
            if level not in followers:
                novel += 1
                followers.add(level)
        self._history.append(level)
        return novel / len(history) if history else 0.0

    def _rescale(self) -> None:
        """Set the level step from the range seen and rebuild the memory with it."""
        span = self._hi - self._lo
        self._step = span / (self.levels - 1) if span > 0 else max(abs(self._hi), 1.0)
        self._followers = {}
        self._history.clear()
        for past in self._values:
            self._novelty(self._level(past))

    def _update(self, ts: float, value: float) -> float:
        learning = len(self._values) < self.learn
        widens = not self._lo <= value <= self._hi
        self._lo = min(self._lo, value)
        self._hi = max(self._hi, value)
        if learning:
            self._values.append(value)
            if len(self._values) == self.learn:
                self._rescale()
            return 0.0
        if widens:
            # Headroom beyond the new extreme: a steady trend then rescales (and replays
            # the memory) a few times, not at every point.
            margin = self.headroom * (self._hi - self._lo)
            if value >= self._hi:
                self._hi += margin
            else:
                self._lo -= margin
            self._rescale()
        score = self._novelty(self._level(value))
        self._values.append(value)
        # A rest after each alarm: NAB counts only the earliest detection in a window and
        # charges every later one outside it, and a real monitor pages once per incident.
        self._since_alarm += 1
        if self._since_alarm <= self.rest:
            return 0.0
        if score >= self.alarm:
            self._since_alarm = 0
        return score
