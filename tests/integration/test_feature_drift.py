"""Served-feature samples -> archive -> drift and skew -> tables and kind=drift records.

A worker serves events whose prices are 40 times the training set's (a planted shift of
``log_price``) and logs every served vector (sample rate 1); the archive job takes the topic
into Delta; the drift job compares the sample with the training set the registry's lineage
names and the skew check with a ``features`` table for the same events (written here with the
worker's own transforms, one value moved, one event left out: the batch job is not run). Rows
that break a declared invariant are served, flagged in their sample and counted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from prometheus_client import REGISTRY
from pyspark.sql import SparkSession

from lakecast.config import DriftSettings, KafkaSettings
from lakecast.features.online import online_feature_matrix
from lakecast.features.snapshot import snapshot_from_arrow
from lakecast.features.spec import FEATURE_COLUMNS
from lakecast.lake.archive import ArchiveTarget, start_archive
from lakecast.monitoring.drift.job import (
    DriftRequest,
    drift_metric_fields,
    run_feature_drift,
    send_drift_metrics,
)
from lakecast.registry import Registry
from lakecast.testing.events import event_payload, event_value, make_events
from lakecast.testing.features import snapshot_rows, write_snapshot
from lakecast.testing.kafka import produce, read_json
from lakecast.testing.models import register_with_holdout, write_features_table
from tests.integration.worker_fixtures import Lake, ThreadedWorker, drain, worker_topics

pytestmark = pytest.mark.integration

EVENTS = 300
PRICE_FACTOR = 40.0


def _price(i: int) -> float:
    return round(float(event_value(i)["price"]) * PRICE_FACTOR, 2)


def _batch_features(path: str, ids: range) -> None:
    """A ``features`` table for events ``ids`` as the worker computes them, one value moved."""
    values = []
    for i in ids:
        value = event_value(i, price=_price(i))
        value["ts"] = dt.datetime.fromisoformat(value["ts"])
        values.append(value)
    matrix = online_feature_matrix(make_events(values), snapshot_from_arrow(snapshot_rows()))
    matrix[5, FEATURE_COLUMNS.index("user_recency_s")] += 60.0
    columns = {name: matrix[:, i] for i, name in enumerate(FEATURE_COLUMNS)}
    write_deltalake(path, pa.table({"event_id": [f"e-{i}" for i in ids], **columns}))


def test_served_samples_are_archived_and_judged_for_drift_and_skew(
    spark: SparkSession, bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    lake = Lake(tmp_path)
    write_snapshot(lake.snapshot)
    training = str(tmp_path / "features")
    write_features_table(training, rows=1_500, days=3, online=True)
    version = register_with_holdout(Registry(lake.registry), training, "sklearn", alias="champion")
    topics = worker_topics(topic_factory) | {"served_features": topic_factory("served")}
    group = f"drift-{topics['events']}"
    started = dt.datetime.now(dt.UTC)

    worker = ThreadedWorker(bootstrap, lake, topics, group, drift=DriftSettings(sample_rate=1.0))
    try:
        produce(bootstrap, topics["events"],
                (event_payload(i, price=_price(i)) for i in range(EVENTS)))  # fmt: skip
        drain(bootstrap, group, topics["events"], EVENTS, worker)
    finally:
        worker.stop()
    assert worker.worker.feature_log.sent == EVENTS

    archive = str(tmp_path / "archive" / "served_features")
    target = ArchiveTarget("served_features", topics["served_features"], archive,
                           str(tmp_path / "checkpoints" / "served_features"))  # fmt: skip
    start_archive(spark, bootstrap, target, available_now=True).awaitTermination(300)
    archived = DeltaTable(archive).to_pyarrow_table()
    assert archived.num_rows == EVENTS
    assert set(archived.column("model_version").to_pylist()) == {version.version}
    # The test snapshot's per-category counts can exceed the 7-day count (see
    # test_feature_invariants): those rows were served and flagged, never dead-lettered.
    flagged = [v for v in archived.column("invariant_violations").to_pylist() if v]
    assert flagged and all(v == ["user_category_share_7d"] for v in flagged)
    counted = REGISTRY.get_sample_value(
        "lakecast_feature_invariant_violations_total", {"feature": "user_category_share_7d"}
    )
    assert counted is not None and counted >= len(flagged)

    batch = str(tmp_path / "batch_features")
    _batch_features(batch, range(EVENTS - 1))  # the last event: not computed by the batch yet
    request = DriftRequest(
        model="purchase@champion",
        registry_root=lake.registry,
        served_features=archive,
        drift_table=str(tmp_path / "monitoring" / "feature_drift"),
        start=started - dt.timedelta(minutes=1),
        end=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1),
        features_table=batch,
        skew_table=str(tmp_path / "monitoring" / "feature_skew"),
    )
    outcome = run_feature_drift(spark, request, DriftSettings(min_rows=100))

    verdicts = {d.feature: d for d in outcome.drift}
    assert outcome.rows == EVENTS and outcome.reference.table == training
    assert verdicts["log_price"].drifted and verdicts["log_price"].psi > 1.0
    assert not verdicts["country_us"].drifted and not verdicts["event_view"].drifted
    table = DeltaTable(request.drift_table).to_pyarrow_table()
    assert sorted(table.column("feature").to_pylist()) == sorted(FEATURE_COLUMNS)
    stored = dict(zip(table.column("feature").to_pylist(), table.column("psi").to_pylist(),
                      strict=True))  # fmt: skip
    assert stored["log_price"] == pytest.approx(verdicts["log_price"].psi)

    assert outcome.skew is not None
    assert (outcome.skew.compared, outcome.skew.unmatched) == (EVENTS - 1, 1)
    assert outcome.skew.by_feature == {"user_recency_s": 1}
    skew_rows = DeltaTable(request.skew_table).to_pyarrow_table().to_pylist()
    assert [(r["event_id"], r["feature"]) for r in skew_rows] == [("e-5", "user_recency_s")]
    assert skew_rows[0]["batch"] - skew_rows[0]["online"] == pytest.approx(60.0)

    sent = send_drift_metrics(
        KafkaSettings(bootstrap_servers=bootstrap),
        topics["metrics"],
        drift_metric_fields(outcome, request),
    )
    drift_records = [
        r for r in read_json(bootstrap, topics["metrics"], at_least=sent) if r["kind"] == "drift"
    ]
    assert sent == len(drift_records) == len(FEATURE_COLUMNS)
    record = next(r for r in drift_records if r["feature"] == "log_price")
    assert record["drifted"] is True and record["rows"] == EVENTS
    assert (record["model"], record["version"]) == ("purchase", version.version)
    assert set(record["window"]) == {"start", "end"}
    assert np.isclose(record["psi"], verdicts["log_price"].psi)
