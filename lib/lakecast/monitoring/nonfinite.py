"""The monitor's watch on NaN or infinite scores, from the workers' ``kind=sample`` records.

A worker dead-letters a non-finite score (``model_error``, never served) and counts it per
model version in its sample (``nonfinite_scores``: ``{"name:version": n}``). The monitor adds
them to ``lakecast_nonfinite_scores_total{model,version}`` for the whole fleet and alerts: an
``anomaly`` record with ``detector: nonfinite_scores``, at most once per version per
``cooldown_s`` (a broken model produces them on every batch). Any count is news: a model that
scores NaN on valid input is broken, so there is no threshold to tune.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from lakecast.errors import InvalidRecordError
from lakecast.monitoring.prometheus import NONFINITE_SCORES

NONFINITE_DETECTOR = "nonfinite_scores"
FIELD = "nonfinite_scores"


def nonfinite_counts(sample: Mapping[str, Any]) -> dict[str, int]:
    """``name:version`` -> count from a sample record (empty when it has none).

    Raises:
        InvalidRecordError: the field is not a mapping of model versions to counts.
    """
    found = sample.get(FIELD) or {}
    if not isinstance(found, Mapping):
        msg = f"sample record: {FIELD} is {type(found).__name__}, not a mapping"
        raise InvalidRecordError(msg)
    counts = {}
    for key, value in found.items():
        if ":" not in str(key) or isinstance(value, bool) or not isinstance(value, int):
            msg = f"sample record: {FIELD} holds {key!r}: {value!r}, not 'name:version': count"
            raise InvalidRecordError(msg)
        if value > 0:
            counts[str(key)] = value
    return counts


class NonFiniteWatch:
    """Counts the fleet's non-finite scores and alerts (see the module docstring)."""

    def __init__(self, source: str = "monitor", cooldown_s: float = 300.0) -> None:
        self.source = source
        self.cooldown_s = cooldown_s
        self._alerted_at: dict[str, datetime] = {}

    def observe(self, sample: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The counter for ``sample``'s non-finite scores and its alerts (not yet sent)."""
        alerts = []
        now = datetime.now(UTC)
        for key, count in nonfinite_counts(sample).items():
            name, _, version = key.rpartition(":")
            NONFINITE_SCORES.labels(name, version).inc(count)
            last = self._alerted_at.get(key)
            if last is not None and (now - last).total_seconds() < self.cooldown_s:
                continue
            self._alerted_at[key] = now
            alerts.append(
                {
                    "kind": "anomaly",
                    "source": self.source,
                    "ts": now.isoformat(),
                    "metric": FIELD,
                    "series": f"{key}/{FIELD}",
                    "scope": "model",
                    "value": float(count),
                    "score": 1.0,
                    "direction": "high",
                    "detector": NONFINITE_DETECTOR,
                    "monitor": self.source,
                    "model": name,
                    "version": version,
                    "worker": sample.get("source"),
                    "reason": f"model {key} scored {count} event(s) NaN or infinite in a "
                    f"sample of {sample.get('source')!r} (dead-lettered, not served)",
                }
            )
        return alerts
