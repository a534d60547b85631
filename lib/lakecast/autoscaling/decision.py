"""The autoscaler's output: one :class:`ScalingDecision` per evaluation.

On the ``metrics`` topic a decision is a ``kind=scaling`` record (key: its ``source``), so the
archive, the dashboards and a human reading the topic see why the fleet changed size, with the
numbers that drove it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from lakecast.errors import DataError
from lakecast.kafka.timestamps import to_epoch, to_iso

KIND = "scaling"


@dataclass(frozen=True)
class ScalingDecision:
    """What the autoscaler decided at ``ts`` and why.

    Attributes:
        current: replicas running when the decision was made.
        desired: replicas wanted after it.
        metric: the metric that drove it (``cpu_percent``, ``records_in_per_s``, ``lag``,
            ``idle``, ``none``).
        reason: the rule and its numbers, plus any window, step or anomaly that held it back.
        ts: seconds since the epoch.
        source: who decided (the autoscaler's id, the record key on the topic).
        value: the metric's value, where there is one.
        target: the target it was compared with.
        recommended: what the rules asked for before the window, the step limit and anomalies.
    """

    current: int
    desired: int
    metric: str
    reason: str
    ts: float
    source: str = "autoscaler"
    value: float | None = None
    target: float | None = None
    recommended: int | None = None

    @property
    def changed(self) -> bool:
        """Whether the decision changes the number of replicas."""
        return self.desired != self.current

    @property
    def direction(self) -> Literal["up", "down", "hold"]:
        if self.desired > self.current:
            return "up"
        return "down" if self.desired < self.current else "hold"

    def to_record(self) -> dict[str, Any]:
        """The ``kind=scaling`` record of the metrics topic (JSON-serialisable)."""
        return {
            "kind": KIND,
            "source": self.source,
            "ts": to_iso(self.ts),
            "current": self.current,
            "desired": self.desired,
            "direction": self.direction,
            "metric": self.metric,
            "value": self.value,
            "target": self.target,
            "recommended": self.recommended,
            "reason": self.reason,
        }

    def to_json(self) -> bytes:
        """The record as UTF-8 JSON, ready to be a Kafka message value."""
        return json.dumps(self.to_record(), separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ScalingDecision:
        """Read a ``kind=scaling`` record back (the archive, tests, the dashboard).

        Raises:
            DataError: not a scaling record, or a field is missing or of the wrong type.
        """
        if record.get("kind") != KIND:
            msg = f"scaling record: kind must be {KIND!r}, found {record.get('kind')!r}"
            raise DataError(msg)
        try:
            return cls(
                current=_int(record["current"], "current"),
                desired=_int(record["desired"], "desired"),
                metric=str(record["metric"]),
                reason=str(record["reason"]),
                ts=to_epoch(record["ts"]),
                source=str(record["source"]),
                value=_optional_float(record.get("value"), "value"),
                target=_optional_float(record.get("target"), "target"),
                recommended=(
                    None
                    if record.get("recommended") is None
                    else _int(record["recommended"], "recommended")
                ),
            )
        except KeyError as exc:
            msg = f"scaling record: field {exc.args[0]!r} is missing"
            raise DataError(msg) from exc


def _int(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"scaling record: {field} must be an integer, found {value!r}"
        raise DataError(msg)
    return value


def _optional_float(value: object, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"scaling record: {field} must be a number, found {value!r}"
        raise DataError(msg)
    return float(value)
