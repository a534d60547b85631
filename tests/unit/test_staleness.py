"""Model and snapshot age: the probe on a real registry and snapshot table, the monitor's watch."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka.consumer.fetcher import ConsumerRecord
from prometheus_client import REGISTRY
from sklearn.linear_model import LogisticRegression

from lakecast.config import KafkaSettings, StalenessSettings
from lakecast.errors import InvalidRecordError
from lakecast.kafka.serde import encode_metric
from lakecast.monitoring.monitor import MonitorService
from lakecast.monitoring.staleness import StalenessProbe, StalenessWatch
from lakecast.registry import Lineage, Registry, Signature
from lakecast.testing.events import SNAPSHOT_DATE
from lakecast.testing.features import write_snapshot

pytestmark = pytest.mark.unit

NOW = datetime(2024, 5, 20, 12, 0, tzinfo=UTC)
DAY = 86_400.0


def _registry(root: Path) -> Registry:
    registry = Registry(root)
    x = np.random.default_rng(0).normal(size=(30, 2))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    dated = Lineage(holdout={"train_to": "2024-05-01", "holdout_to": "2024-05-02"})
    registry.register("stale", model, signature=Signature.of(["a", "b"]), lineage=dated)
    registry.promote("stale", "1.0.0", "champion")
    registry.register("undated", model, signature=Signature.of(["a", "b"]), lineage=Lineage())
    registry.promote("undated", "1.0.0", "champion")
    return registry


def test_the_probe_ages_a_version_from_its_training_data_and_the_newest_snapshot(
    tmp_path: Path,
) -> None:
    registry = _registry(tmp_path / "registry")
    snapshots = str(tmp_path / "entity_features")
    write_snapshot(snapshots)
    settings = StalenessSettings(models=("stale@champion", "undated@champion", "nosuch@champion"))
    probe = StalenessProbe(settings, registry.root, snapshots, source="monitor-t")
    assert probe.due()
    records = probe.records(now=NOW)
    assert not probe.due()  # the next one after check_interval_s
    by_model = {r["model"]: r for r in records}
    assert set(by_model) == {"stale", "undated"}  # an alias that does not resolve is skipped
    stale = by_model["stale"]
    assert {k: stale[k] for k in ("kind", "source", "version", "alias", "age_from")} == {
        "kind": "staleness",
        "source": "monitor-t",
        "version": "1.0.0",
        "alias": "champion",
        "age_from": "training_data_end",
    }
    # Data to the end of 2024-05-02; the snapshot of SNAPSHOT_DATE ends a day after it.
    assert stale["model_age_s"] == (NOW - datetime(2024, 5, 3, tzinfo=UTC)).total_seconds()
    snapshot_end = datetime(
        SNAPSHOT_DATE.year, SNAPSHOT_DATE.month, SNAPSHOT_DATE.day + 1, tzinfo=UTC
    )
    assert stale["snapshot_age_s"] == (NOW - snapshot_end).total_seconds()
    undated = by_model["undated"]
    assert undated["age_from"] == "registered_at"
    created = registry.resolve("undated:1.0.0").created_at
    assert undated["model_age_s"] == pytest.approx((NOW - created).total_seconds(), abs=1e-3)
    empty = StalenessProbe(settings, registry.root, str(tmp_path / "none")).records(now=NOW)
    assert {r["snapshot_age_s"] for r in empty} == {None}


def _message(fields: dict[str, Any], offset: int = 0) -> ConsumerRecord:
    value = encode_metric("staleness", "monitor", NOW, fields)
    return ConsumerRecord(
        "metrics", 0, None, offset, 0, 0, b"monitor", value, [], None, 7, len(value), 0
    )


def _fields(model_age_days: float, snapshot_age_hours: float | None) -> dict[str, Any]:
    return {
        "model": "aged",
        "version": "2.1.0",
        "alias": "champion",
        "model_age_s": model_age_days * DAY,
        "snapshot_age_s": None if snapshot_age_hours is None else snapshot_age_hours * 3600,
    }


def test_the_monitor_sets_the_age_gauge_and_alerts_once_while_over_the_limit() -> None:
    settings = StalenessSettings(max_model_age_days=30, max_snapshot_age_hours=36)
    service = MonitorService(KafkaSettings(), "metrics", staleness=settings)
    labels = {"model": "aged", "version": "2.1.0", "alias": "champion"}
    assert service.handle(_message(_fields(10, 12))) == []
    assert REGISTRY.get_sample_value("lakecast_model_age_seconds", labels) == 10 * DAY
    alerts = service.handle(_message(_fields(31, 40), 1))
    assert alerts is not None
    assert [(a["metric"], a["detector"], a["value"]) for a in alerts] == [
        ("model_age_s", "staleness", 31 * DAY),
        ("snapshot_age_s", "staleness", 40 * 3600.0),
    ]
    assert alerts[0]["reason"] == (
        "model aged:2.1.0 (aged@champion) is 31.0 days old, over the limit of 30.0 days "
        "(config staleness:)"
    )
    assert service.handle(_message(_fields(32, 41), 2)) == []  # still over: said already
    assert service.handle(_message(_fields(1, None), 3)) == []  # a retrain: back under
    again = service.handle(_message(_fields(33, None), 4))
    assert again is not None
    assert [a["metric"] for a in again] == ["model_age_s"]
    assert REGISTRY.get_sample_value("lakecast_model_age_seconds", labels) == 33 * DAY


def test_a_staleness_record_that_breaks_the_contract_is_skipped_and_counted() -> None:
    service = MonitorService(KafkaSettings(), "metrics")
    broken = _fields(1, 1)
    del broken["alias"]
    assert service.handle(_message(broken)) is None
    assert service.handle(_message(_fields(1, 1) | {"model_age_s": "old"}, 1)) is None
    assert service.stats.bad_records == 2
    with pytest.raises(InvalidRecordError, match=r"missing fields \['alias'\]"):
        StalenessWatch().observe(broken)
