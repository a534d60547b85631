"""The monitor's watch on ``kind=quality`` records: gauges, and alerts on drops.

Every quality record sets ``lakecast_model_quality{model,version,variant,metric}``; each of
its metrics that fell behind the version's own holdout figure by more than
``quality.max_drop`` (:func:`lakecast.quality.records.quality_drops`) becomes one alert, an
``anomaly`` record with ``detector: quality_holdout`` that the monitor writes back to the
``metrics`` topic like any other anomaly. The same (version, variant, day, metric) alerts
once, however often the quality job reruns that day.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from lakecast.config import QualitySettings
from lakecast.monitoring.prometheus import MODEL_QUALITY
from lakecast.quality.metrics import METRIC_NAMES
from lakecast.quality.records import check_quality_record, quality_drops

QUALITY_DETECTOR = "quality_holdout"
_REMEMBERED = 10_000  # alerted keys kept, so a rerun of a day does not alert again


class QualityWatch:
    """Turns quality records into gauges and alerts (see the module docstring)."""

    def __init__(self, settings: QualitySettings | None = None, source: str = "monitor") -> None:
        self.settings = settings or QualitySettings()
        self.source = source
        self._alerted: OrderedDict[tuple[str, ...], None] = OrderedDict()

    def observe(self, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Gauges for ``record`` and its alerts (anomaly records, not yet sent).

        Raises:
            InvalidRecordError: the record misses a field of the contract.
        """
        check_quality_record(record)
        model, version, variant = (
            str(record["model"]),
            str(record["version"]),
            str(record["variant"]),
        )
        for metric in (*METRIC_NAMES, "base_rate", "count"):
            value = record.get(metric)
            if value is not None:
                MODEL_QUALITY.labels(model, version, variant, metric).set(float(value))
        alerts = []
        for drop in quality_drops(record, self.settings.max_drop, self.settings.min_count):
            key = (model, version, variant, str(record["day"]), drop.metric)
            if key in self._alerted:
                continue
            self._alerted[key] = None
            if len(self._alerted) > _REMEMBERED:
                self._alerted.popitem(last=False)
            alerts.append(
                {
                    "kind": "anomaly",
                    "source": self.source,
                    "ts": datetime.now(UTC).isoformat(),
                    "metric": f"quality_{drop.metric}",
                    "series": f"{model}:{version}/{variant}/{drop.metric}",
                    "scope": "model",
                    "value": drop.live,
                    "score": 1.0,
                    "direction": "low" if drop.change < 0 else "high",
                    "detector": QUALITY_DETECTOR,
                    "monitor": self.source,
                    "model": model,
                    "version": version,
                    "variant": variant,
                    "day": record["day"],
                    "holdout": drop.holdout,
                    "allowed": drop.allowed,
                    "count": record["count"],
                    "reason": f"{model}:{version} ({variant}) on {record['day']}: "
                    + drop.describe(),
                }
            )
        return alerts
