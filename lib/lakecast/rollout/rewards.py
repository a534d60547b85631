"""Bandit rewards: purchases that follow a prediction for the same user within a window.

Predictions (from the ``predictions`` topic) are impressions of the variant that served them,
for one experiment; a purchase event (from the ``events`` topic) rewards the latest prediction
of that user made at most ``window`` before it, once. The two topics are read independently,
so a purchase may be seen before the prediction it follows: it waits (up to the window, in
event time) for that prediction to arrive.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from lakecast.errors import InvalidRecordError
from lakecast.kafka.serde import decode_json, parse_utc


@dataclass
class _Impression:
    ts: datetime
    variant: str
    rewarded: bool = False


@dataclass
class RewardTracker:
    """Impressions and rewards per variant of one experiment."""

    experiment: str
    variants: Sequence[str]
    window: timedelta = timedelta(minutes=10)
    reward_event: str = "purchase"
    impressions: dict[str, int] = field(default_factory=dict)
    rewards: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    _by_user: dict[str, list[_Impression]] = field(default_factory=lambda: defaultdict(list))
    _pending: list[tuple[str, datetime]] = field(default_factory=list)
    _newest: datetime | None = None

    def __post_init__(self) -> None:
        self.impressions = dict.fromkeys(self.variants, 0)
        self.rewards = dict.fromkeys(self.variants, 0)

    def _seen(self, ts: datetime) -> None:
        if self._newest is None or ts > self._newest:
            self._newest = ts

    def add_prediction(self, value: bytes | Mapping[str, Any] | None) -> bool:
        """Count a prediction of this experiment; others (and bad records) are skipped."""
        try:
            data = value if isinstance(value, Mapping) else decode_json(value)
            if data.get("experiment") != self.experiment:
                return False
            variant, user = data.get("variant"), data.get("user_id")
            ts = parse_utc(data.get("ts"), "ts", "bandit prediction")
        except InvalidRecordError:
            self.skipped += 1
            return False
        if variant not in self.impressions or not isinstance(user, str):
            self.skipped += 1
            return False
        self.impressions[variant] += 1
        impressions = self._by_user[user]
        times = [i.ts for i in impressions]
        impressions.insert(bisect.bisect_right(times, ts), _Impression(ts, variant))
        self._seen(ts)
        return True

    def add_event(self, value: bytes | Mapping[str, Any] | None) -> bool:
        """Take a purchase event as a possible reward; other events are ignored."""
        try:
            data = value if isinstance(value, Mapping) else decode_json(value)
            if data.get("event_type") != self.reward_event:
                return False
            user = data.get("user_id")
            ts = parse_utc(data.get("ts"), "ts", "bandit event")
        except InvalidRecordError:
            self.skipped += 1
            return False
        if not isinstance(user, str):
            self.skipped += 1
            return False
        self._seen(ts)
        self._pending.append((user, ts))
        return True

    def settle(self) -> None:
        """Attribute waiting purchases; drop those whose window has closed without a match."""
        waiting = []
        for user, ts in self._pending:
            if self._attribute(user, ts):
                continue
            if self._newest is not None and self._newest - ts <= self.window:
                waiting.append((user, ts))
        self._pending = waiting
        self._prune()

    def _attribute(self, user: str, ts: datetime) -> bool:
        for impression in reversed(self._by_user.get(user, [])):
            if impression.ts > ts:
                continue
            if ts - impression.ts > self.window:
                return False
            if not impression.rewarded:
                impression.rewarded = True
                self.rewards[impression.variant] += 1
                return True
            return False  # the latest prediction before it was already rewarded
        return False

    def _prune(self) -> None:
        if self._newest is None:
            return
        horizon = self._newest - 2 * self.window
        for user in list(self._by_user):
            kept = [i for i in self._by_user[user] if i.ts >= horizon]
            if kept:
                self._by_user[user] = kept
            else:
                del self._by_user[user]
