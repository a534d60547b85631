"""The monitor service on the real broker writes kind=staleness records and alerts on them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY
from sklearn.linear_model import LogisticRegression

from lakecast.config import KafkaSettings, StalenessSettings
from lakecast.monitoring.monitor import MonitorService
from lakecast.monitoring.staleness import StalenessProbe
from lakecast.registry import Lineage, Registry, Signature
from lakecast.testing.clock import wait_for
from lakecast.testing.features import write_snapshot
from lakecast.testing.kafka import read_json

pytestmark = pytest.mark.integration


def test_the_monitor_probes_ages_writes_staleness_records_and_alerts(
    bootstrap: str, topic_factory: Callable[..., str], consumer_group: str, tmp_path: Path
) -> None:
    registry = Registry(tmp_path / "registry")
    x = np.random.default_rng(0).normal(size=(30, 2))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    lineage = Lineage(holdout={"train_to": "2024-05-01", "holdout_to": "2024-05-02"})
    registry.register("aging", model, signature=Signature.of(["a", "b"]), lineage=lineage)
    registry.promote("aging", "1.0.0", "champion")
    snapshots = str(tmp_path / "entity_features")
    write_snapshot(snapshots)  # of 2024-05-01: far older than 36 hours
    metrics = topic_factory("metrics")
    settings = StalenessSettings(models=("aging@champion",), check_interval_s=600)
    service = MonitorService(
        KafkaSettings(bootstrap_servers=bootstrap),
        metrics,
        group_id=consumer_group,
        from_beginning=True,
        poll_timeout_ms=100,
        staleness=settings,
        staleness_probe=StalenessProbe(settings, registry.root, snapshots, "monitor-age"),
    )
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: service.stats.written >= 2, what="two staleness alerts", timeout_s=60)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()

    records = read_json(bootstrap, metrics)
    (staleness,) = [r for r in records if r["kind"] == "staleness"]  # once per interval
    assert (staleness["source"], staleness["model"], staleness["version"]) == (
        "monitor-age",
        "aging",
        "1.0.0",
    )
    age_then = datetime.fromisoformat(staleness["ts"]) - datetime(2024, 5, 3, tzinfo=UTC)
    assert staleness["model_age_s"] == pytest.approx(age_then.total_seconds(), abs=1e-3)
    alerts = [r for r in records if r["kind"] == "anomaly"]
    assert sorted((a["metric"], a["detector"]) for a in alerts) == [
        ("model_age_s", "staleness"),
        ("snapshot_age_s", "staleness"),
    ]
    gauge = REGISTRY.get_sample_value(
        "lakecast_model_age_seconds", {"model": "aging", "version": "1.0.0", "alias": "champion"}
    )
    assert gauge == staleness["model_age_s"]
