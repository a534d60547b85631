"""The extract job and the mapInArrow path, on a small hand-made events table."""

from __future__ import annotations

import importlib.util
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from lakecast.features.extract import extract_features
from lakecast.features.snapshot import load_snapshot
from lakecast.features.spec import EVENT_FEATURE_COLUMNS, FEATURE_COLUMNS, FEATURES_VERSION
from lakecast.features.training_set import feature_matrix, feature_rows, valid_events
from lakecast.features.transforms import FeatureLookups, event_features
from lakecast.lake.delta import commit_metadata, table_version
from lakecast.testing.events import make_events

D = date(2024, 3, 4)
EARLIER = D - timedelta(days=2)
JOB = Path(__file__).resolve().parents[2] / "jobs" / "extract_features.py"


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def _rows() -> list[dict[str, Any]]:
    return [
        {"event_id": "e1", "user_id": "u1", "ts": _at(EARLIER, 9), "price": 12.0},
        {"event_id": "e2", "user_id": "u1", "ts": _at(EARLIER, 10), "category": "toys",
         "price": 40.0, "device": "tablet", "country": "JP"},
        {"event_id": "e3", "user_id": "u1", "ts": _at(D, 8), "session_id": "s9",
         "price": 14.0, "device": "mobile"},
        {"event_id": "e4", "user_id": "u1", "ts": _at(D, 8, 5), "session_id": "s9",
         "event_type": "purchase", "price": 14.0},
        {"event_id": "e5", "user_id": "u2", "ts": _at(D, 21, 30), "category": "toys",
         "price": 20.0, "country": "ZZ"},
        {"event_id": "bad", "user_id": "u2", "ts": _at(D, 22), "category": "spaceships"},
    ]  # fmt: skip


def _load_job() -> ModuleType:
    spec = importlib.util.spec_from_file_location("extract_features_job", JOB)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_map_in_arrow_gives_what_the_transform_gives_on_the_same_arrow_rows(spark: Any) -> None:
    events = valid_events(spark.createDataFrame(make_events(_rows())))
    references = {EARLIER: {"books": 8.0, "toys": 50.0}, D: {"books": 7.0, "toys": 10.0}}
    out = feature_rows(events, references, [EARLIER, D]).toArrow()
    assert sorted(out.column("event_id").to_pylist()) == ["e1", "e2", "e3", "e4", "e5"]
    for day, means in references.items():
        part = out.filter(pc.equal(out.column("date"), pa.scalar(day, pa.date32())))
        direct = event_features(part, FeatureLookups(means))
        for name in EVENT_FEATURE_COLUMNS:
            np.testing.assert_allclose(
                part.column(name).to_numpy(), direct[name], rtol=0, atol=1e-12, err_msg=name
            )
        ids = part.column("event_id").to_pylist()
        ratios = dict(zip(ids, part.column("price_to_category_mean").to_pylist(), strict=True))
        if day == D:
            assert ratios == {"e3": 2.0, "e4": 2.0, "e5": 2.0}
        else:
            assert ratios == {"e1": 1.5, "e2": 0.8}
    matrix = feature_matrix(out)
    assert matrix.shape == (5, len(FEATURE_COLUMNS))
    assert not np.isnan(matrix).any()


def test_extract_job_is_idempotent_per_run_date_and_records_the_events_version(
    spark: Any, table_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    events_path, out, entity = table_path("events"), table_path("features"), table_path("entity")
    spark.createDataFrame(make_events(_rows())).write.format("delta").partitionBy("date").save(
        events_path
    )

    # run 1: every date, through the job's entry point
    args = ["--all", "--events", events_path, "--out", out, "--entity-features", entity]
    assert _load_job().main(args) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["run_dates"] == [EARLIER.isoformat(), D.isoformat()]
    assert (printed["events_read"], printed["events_invalid"]) == (6, 1)
    assert (printed["feature_rows"], printed["labelled_rows"], printed["positive_labels"]) == (
        5,
        4,
        1,
    )
    assert printed["entity_rows"] == 2 + 1 + 2  # users u1, u2; product p; categories books, toys

    def rows_of(day: date) -> list[tuple[Any, ...]]:
        frame = spark.read.format("delta").load(out).filter(f"date = DATE'{day}'")
        return sorted(tuple(row) for row in frame.collect())

    first_d, first_earlier = rows_of(D), rows_of(EARLIER)
    columns = spark.read.format("delta").load(out).columns
    by_id = {row[0]: dict(zip(columns, row, strict=True)) for row in first_d}
    assert sorted(by_id) == ["e3", "e4", "e5"]  # the bad event is not there
    assert by_id["e3"]["user_events_7d"] == 2.0  # D's rows saw the history of D-2
    assert (by_id["e3"]["label"], by_id["e4"]["label"], by_id["e5"]["label"]) == (1, None, 0)
    assert by_id["e3"]["features_version"] == FEATURES_VERSION
    assert commit_metadata(spark, out)["events_version"] == 0

    # a late event for D-2 makes a new events version; it touches nothing D's rows depend on
    late = make_events(
        [{"event_id": "e0", "user_id": "u3", "ts": _at(EARLIER, 7), "product_id": "p-late",
          "category": "grocery"}]
    )  # fmt: skip
    spark.createDataFrame(late).write.format("delta").mode("append").save(events_path)
    version_before = table_version(spark, out)

    # run 2: D alone, from the new events version: same rows (no duplicates), D-2 untouched
    summary = extract_features(
        spark, events_path=events_path, features_path=out, entity_features_path=entity, run_date=D
    )
    assert summary.events_version == 1
    assert summary.features_table_version == version_before + 1
    assert rows_of(D) == first_d
    assert rows_of(EARLIER) == first_earlier
    assert commit_metadata(spark, out) == {
        "job": "extract_features",
        "events_path": events_path,
        "events_version": 1,
        "run_date": D.isoformat(),
        "features_version": FEATURES_VERSION,
    }
    assert commit_metadata(spark, out, version_before)["events_version"] == 0

    snapshot = load_snapshot(entity)  # delta-rs, as the streaming worker reads it
    assert snapshot.snapshot_date == D
    assert snapshot.table_version == 1
    assert set(snapshot.user_index) == {"u1", "u2", "u3"}  # u3's late event is within 7 days
    assert snapshot.category_mean_price["toys"] == 30.0  # 40 on D-2, 20 on D
