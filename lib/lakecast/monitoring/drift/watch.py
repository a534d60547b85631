"""The monitor's watch on ``kind=drift`` records: gauges, and an alert per drifted feature.

Every drift record sets ``lakecast_feature_drift{model,version,feature,statistic}`` for
``psi`` and ``ks``; a record with ``drifted: true`` becomes one ``anomaly`` record (detector
``feature_drift``) that the monitor writes back to ``metrics`` like any other, once per
version, feature and window, however often the drift job reruns that window.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from lakecast.errors import InvalidRecordError
from lakecast.monitoring.prometheus import FEATURE_DRIFT

DRIFT_DETECTOR = "feature_drift"
DRIFT_FIELDS = (
    "model",
    "version",
    "feature",
    "psi",
    "ks",
    "psi_threshold",
    "ks_threshold",
    "drifted",
    "rows",
    "window",
)
_REMEMBERED = 10_000


def check_drift_record(record: Mapping[str, Any]) -> None:
    """Raise an InvalidRecordError naming the first missing or mistyped field of the contract."""
    for name in DRIFT_FIELDS:
        if record.get(name) is None:
            msg = f"drift record from {record.get('source')!r}: field {name!r} is missing"
            raise InvalidRecordError(msg, field=name)
    for name in ("psi", "ks", "psi_threshold", "ks_threshold", "rows"):
        if isinstance(record[name], bool) or not isinstance(record[name], int | float):
            msg = f"drift record: field {name!r} must be a number, found {record[name]!r}"
            raise InvalidRecordError(msg, field=name)
    if not isinstance(record["drifted"], bool):
        msg = f"drift record: field 'drifted' must be a boolean, found {record['drifted']!r}"
        raise InvalidRecordError(msg, field="drifted")


class DriftWatch:
    """Turns drift records into gauges and alerts (see the module docstring)."""

    def __init__(self, source: str = "monitor") -> None:
        self.source = source
        self._alerted: OrderedDict[tuple[str, ...], None] = OrderedDict()

    def observe(self, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Gauges for ``record`` and its alert (an anomaly record, not yet sent).

        Raises:
            InvalidRecordError: the record breaks the contract.
        """
        check_drift_record(record)
        model, version, feature = str(record["model"]), str(record["version"]), record["feature"]
        for statistic in ("psi", "ks"):
            FEATURE_DRIFT.labels(model, version, feature, statistic).set(float(record[statistic]))
        if not record["drifted"]:
            return []
        window = record["window"]
        end = str(window.get("end")) if isinstance(window, Mapping) else str(window)
        key = (model, version, str(feature), end)
        if key in self._alerted:
            return []
        self._alerted[key] = None
        if len(self._alerted) > _REMEMBERED:
            self._alerted.popitem(last=False)
        psi, ks = float(record["psi"]), float(record["ks"])
        return [
            {
                "kind": "anomaly",
                "source": self.source,
                "ts": datetime.now(UTC).isoformat(),
                "metric": "feature_drift",
                "series": f"{model}:{version}/{feature}",
                "scope": "model",
                "value": psi,
                "score": 1.0,
                "direction": "high",
                "detector": DRIFT_DETECTOR,
                "monitor": self.source,
                "model": model,
                "version": version,
                "feature": feature,
                "psi": psi,
                "ks": ks,
                "window": window,
                "reason": (
                    f"{model}:{version} feature {feature!r} drifted from its training set: "
                    f"PSI {psi:.3f} (threshold {record['psi_threshold']}), "
                    f"KS {ks:.3f} (threshold {record['ks_threshold']}) over {record['rows']} rows"
                ),
            }
        ]
