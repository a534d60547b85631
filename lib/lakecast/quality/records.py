"""``kind=quality`` records for the ``metrics`` topic, and the check the monitor alerts on.

A record carries a group's outcome metrics and, under ``holdout``, the same metrics as the
registry recorded them for that version on its own holdout: the reference a drop is measured
against. :func:`quality_drops` is that comparison; the monitor and ``lakecast retrain`` both
call it, so an alert and a retraining trigger never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lakecast.config import QualityDrops
from lakecast.errors import InvalidRecordError
from lakecast.quality.metrics import HIGHER_IS_BETTER, HOLDOUT_KEYS, METRIC_NAMES

QUALITY_KIND = "quality"
RECORD_FIELDS = ("model", "version", "variant", "day", "count", "base_rate", *METRIC_NAMES)


def holdout_figures(version_metrics: Mapping[str, float]) -> dict[str, float]:
    """The version's own holdout value of each quality metric the registry has."""
    found = {name: version_metrics.get(key) for name, key in HOLDOUT_KEYS.items()}
    return {name: float(value) for name, value in found.items() if value is not None}


def quality_record(row: Mapping[str, Any], holdout: Mapping[str, float]) -> dict[str, Any]:
    """The fields of a ``kind=quality`` record (no envelope) for one ``model_quality`` row."""
    return {
        "model": row["model_name"],
        "version": row["model_version"],
        "variant": row["variant"],
        "day": row["day"].isoformat() if hasattr(row["day"], "isoformat") else str(row["day"]),
        "auc": row["auc"],
        "log_loss": row["log_loss"],
        "brier": row["brier"],
        "ece": row["ece"],
        "base_rate": row["base_rate"],
        "count": int(row["count"]),
        "holdout": dict(holdout),
    }


@dataclass(frozen=True)
class QualityDrop:
    """One metric of one quality record beyond its allowed distance from the holdout."""

    metric: str
    live: float
    holdout: float
    allowed: float

    @property
    def change(self) -> float:
        """Live minus holdout (negative for a fallen AUC)."""
        return self.live - self.holdout

    def describe(self) -> str:
        return (
            f"{self.metric} {self.live:.4f} against holdout {self.holdout:.4f} "
            f"({self.change:+.4f}, allowed {self.allowed:g})"
        )


def check_quality_record(record: Mapping[str, Any]) -> None:
    """Raise InvalidRecordError naming the first missing or mistyped field of a quality record."""
    for name in RECORD_FIELDS:
        if name not in record:
            msg = f"quality record from {record.get('source')!r}: field {name!r} is missing"
            raise InvalidRecordError(msg, field=name)
    for name in ("log_loss", "brier", "ece", "base_rate"):
        if not isinstance(record[name], int | float) or isinstance(record[name], bool):
            msg = f"quality record: field {name!r} must be a number, found {record[name]!r}"
            raise InvalidRecordError(msg, field=name)
    if record["auc"] is not None and not isinstance(record["auc"], int | float):
        msg = f"quality record: field 'auc' must be a number or null, found {record['auc']!r}"
        raise InvalidRecordError(msg, field="auc")
    if not isinstance(record.get("holdout", {}), Mapping):
        msg = f"quality record: field 'holdout' must be a mapping, found {record['holdout']!r}"
        raise InvalidRecordError(msg, field="holdout")


def quality_drops(
    record: Mapping[str, Any], max_drop: QualityDrops, min_count: int = 1
) -> list[QualityDrop]:
    """The metrics of ``record`` that fell behind its ``holdout`` by more than ``max_drop``.

    Nothing is judged on fewer than ``min_count`` predictions, nor a metric without a live
    or holdout value (an AUC of a one-class day).
    """
    if int(record.get("count") or 0) < min_count:
        return []
    holdout = record.get("holdout") or {}
    drops = []
    for metric in METRIC_NAMES:
        live, reference = record.get(metric), holdout.get(metric)
        if live is None or reference is None or not math.isfinite(float(live)):
            continue
        allowed = float(getattr(max_drop, metric))
        worse = (reference - live) if HIGHER_IS_BETTER[metric] else (live - reference)
        if worse > allowed:
            drops.append(QualityDrop(metric, float(live), float(reference), allowed))
    return drops
