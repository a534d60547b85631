"""Model and entity-snapshot age: ``kind=staleness`` records, gauges and alerts.

A model is as old as the newest data it learnt from, not as its registration: a version
trained today on last month's table is a month stale. Its data ends with the last day of its
training run (``lineage.holdout['holdout_to']``, else ``train_to``); a version whose lineage
lacks both is aged from its registration, and the record says so (``age_from``). The entity
snapshot is the newest ``snapshot_date`` partition of ``entity_features``, aged from the end
of that day.

:class:`StalenessProbe` (run by the monitor every ``staleness.check_interval_s``) writes one
record per watched ``NAME@ALIAS``; :class:`StalenessWatch` turns any such record into the
gauges and, once per (version, alias, what) until it is back under its limit, an alert: an
``anomaly`` record with ``detector: staleness`` like the monitor's others.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from lakecast.config import StalenessSettings
from lakecast.errors import InvalidRecordError, LakecastError
from lakecast.monitoring.prometheus import MODEL_AGE, SNAPSHOT_AGE

if TYPE_CHECKING:
    from lakecast.registry import ModelVersion

STALENESS_KIND = "staleness"
STALENESS_DETECTOR = "staleness"
_FIELDS = ("model", "version", "alias", "model_age_s", "snapshot_age_s")


def _end_of(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


def training_data_end(record: ModelVersion) -> datetime | None:
    """The end of the last day of data the version learnt from (None when not recorded)."""
    holdout = record.lineage.holdout
    for key in ("holdout_to", "train_to"):
        value = holdout.get(key)
        if value:
            return _end_of(date.fromisoformat(str(value)[:10]))
    return None


def model_age_s(record: ModelVersion, now: datetime) -> tuple[float, str]:
    """(seconds, what it is measured from): the training data's end, else the registration."""
    end = training_data_end(record)
    if end is not None:
        return (now - end).total_seconds(), "training_data_end"
    created = record.created_at
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return (now - created).total_seconds(), "registered_at"


def snapshot_age_s(entity_features: str, now: datetime) -> float | None:
    """Seconds since the end of the newest snapshot day of ``entity_features`` (None: none)."""
    from deltalake import DeltaTable

    from lakecast.features.snapshot import latest_snapshot_date

    if not DeltaTable.is_deltatable(entity_features):
        return None
    day = latest_snapshot_date(DeltaTable(entity_features))
    return None if day is None else (now - _end_of(day)).total_seconds()


def staleness_record(
    record: ModelVersion,
    alias: str,
    snapshot_age: float | None,
    *,
    source: str,
    now: datetime,
) -> dict[str, Any]:
    """The ``kind=staleness`` record of one served version (contract fields plus context)."""
    age, measured_from = model_age_s(record, now)
    return {
        "kind": STALENESS_KIND,
        "source": source,
        "ts": now.isoformat(),
        "model": record.name,
        "version": record.version,
        "alias": alias,
        "model_age_s": round(age, 3),
        "snapshot_age_s": None if snapshot_age is None else round(snapshot_age, 3),
        "age_from": measured_from,
    }


class StalenessProbe:
    """Builds the staleness records of the watched aliases, at most once per interval."""

    def __init__(
        self,
        settings: StalenessSettings,
        registry_root: str,
        entity_features: str,
        source: str = "monitor",
    ) -> None:
        self.settings = settings
        self.registry_root = registry_root
        self.entity_features = entity_features
        self.source = source
        self._last: float | None = None

    def due(self, now: float | None = None) -> bool:
        clock = time.monotonic() if now is None else now
        return self._last is None or clock - self._last >= self.settings.check_interval_s

    def records(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """One record per watched alias that resolves; an unresolvable one is skipped (the
        model may not be trained yet), never fatal to the monitor."""
        from lakecast.registry import Registry

        self._last = time.monotonic()
        at = now or datetime.now(UTC)
        registry = Registry(self.registry_root)
        snapshot = snapshot_age_s(self.entity_features, at)
        found = []
        for reference in self.settings.models:
            try:
                record = registry.resolve(reference)
            except LakecastError:
                continue
            alias = reference.partition("@")[2] or "latest"
            found.append(staleness_record(record, alias, snapshot, source=self.source, now=at))
        return found


def check_staleness_record(record: Mapping[str, Any]) -> None:
    """Raises:
    InvalidRecordError: a contract field is missing or an age is not a number.
    """
    missing = [name for name in _FIELDS if name not in record]
    if missing:
        msg = f"staleness record: missing fields {missing}"
        raise InvalidRecordError(msg)
    for name in ("model_age_s", "snapshot_age_s"):
        value = record[name]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            msg = f"staleness record: {name} is {value!r}, not a number of seconds"
            raise InvalidRecordError(msg)


class StalenessWatch:
    """Gauges for each staleness record, and an alert when an age is over its limit."""

    def __init__(self, settings: StalenessSettings | None = None, source: str = "monitor") -> None:
        self.settings = settings or StalenessSettings()
        self.source = source
        self._over: set[tuple[str, ...]] = set()

    def observe(self, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Gauges for ``record`` and its alerts (anomaly records, not yet sent).

        Raises:
            InvalidRecordError: the record breaks the contract.
        """
        check_staleness_record(record)
        model, version, alias = str(record["model"]), str(record["version"]), str(record["alias"])
        limits = {
            "model_age_s": self.settings.max_model_age_days * 86_400,
            "snapshot_age_s": self.settings.max_snapshot_age_hours * 3_600,
        }
        model_age, snapshot_age = record["model_age_s"], record["snapshot_age_s"]
        if model_age is not None:
            MODEL_AGE.labels(model, version, alias).set(float(model_age))
        if snapshot_age is not None:
            SNAPSHOT_AGE.set(float(snapshot_age))
        alerts = []
        for what, limit in limits.items():
            value = record[what]
            key = (model, version, alias, what) if what == "model_age_s" else (what,)
            if value is None or float(value) <= limit:
                self._over.discard(key)
                continue
            if key in self._over:
                continue  # alerted already; again only after it came back under
            self._over.add(key)
            alerts.append(self._alert(record, what, float(value), limit))
        return alerts

    def _alert(
        self, record: Mapping[str, Any], what: str, value: float, limit: float
    ) -> dict[str, Any]:
        model, version, alias = record["model"], record["version"], record["alias"]
        thing = (
            f"model {model}:{version} ({model}@{alias})"
            if what == "model_age_s"
            else "the entity-feature snapshot"
        )
        return {
            "kind": "anomaly",
            "source": self.source,
            "ts": datetime.now(UTC).isoformat(),
            "metric": what,
            "series": f"{model}@{alias}/{what}",
            "scope": "model",
            "value": value,
            "score": 1.0,
            "direction": "high",
            "detector": STALENESS_DETECTOR,
            "monitor": self.source,
            "model": model,
            "version": version,
            "alias": alias,
            "allowed": limit,
            "reason": f"{thing} is {value / 86_400:.1f} days old, over the limit of "
            f"{limit / 86_400:.1f} days (config staleness:)",
        }
