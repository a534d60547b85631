"""The direct read (Python workers read the features table's files) on a real local Spark and
real Delta tables: the same predictions as Spark's read, for a partitioned table, with time
travel, NaN rows and a rollout; Spark's read wherever the direct read would not be exact."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from lakecast.errors import ScoringError
from lakecast.features.spec import FEATURE_COLUMNS
from lakecast.rollout.flags import Condition
from lakecast.rollout.router import Router
from lakecast.rollout.store import RolloutStore
from lakecast.rollout.strategies import ModelRule, MultiModel, RolloutState, Variant
from lakecast.scoring.direct import FileSplit, SplitReader
from lakecast.scoring.run import ScoringSummary, score_batch
from lakecast.testing.features import synthetic_features
from tests.integration import test_score_batch as scoring

NAME, ROWS = scoring.NAME, scoring.ROWS
CHAMPION, CHALLENGER = f"{NAME}:1.0.0", f"{NAME}:1.1.0"  # sklearn, Keras
CHANGED_DAY = dt.date(2026, 1, 2)

# The registry (and its features table) of the single-model tests, built once for this module.
lake = scoring.lake


@pytest.fixture(scope="module")
def history(spark: Any, lake: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A features table partitioned by date with two versions: v0 has NaN and infinite values
    in some rows (and two devices, for a rollout by device); v1 re-extracted one date."""
    table, bad_ids = scoring._with_nonfinite(lake["table"])
    devices = np.where(np.arange(table.num_rows) % 3 == 0, "ios", "web")
    table = table.set_column(
        table.schema.get_field_index("device"), "device", pa.array(devices, pa.string())
    )
    path = str(tmp_path_factory.mktemp("direct") / "features")
    scoring._write(spark, table, path)
    on_day = pc.equal(table.column("date"), pa.scalar(CHANGED_DAY, pa.date32()))
    column = FEATURE_COLUMNS[2]
    shifted = table.filter(on_day)
    shifted = shifted.set_column(
        shifted.schema.get_field_index(column), column, pc.add(shifted.column(column), 3.0)
    )
    (
        spark.createDataFrame(shifted)
        .write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", f"date = DATE'{CHANGED_DAY.isoformat()}'")
        .save(path)
    )
    latest = pa.concat_tables(
        [table.filter(pc.invert(on_day)), shifted], promote_options="permissive"
    )
    return {"path": path, "v0": table, "v1": latest, "bad_ids": bad_ids}


def _score(
    spark: Any, lake: dict[str, Any], predictions: str, model: str, **more: Any
) -> ScoringSummary:
    return score_batch(spark, scoring._request(lake, predictions, model, **more))


def _written(spark: Any, path: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    rows = spark.read.format("delta").load(path).collect()
    return {(r["event_id"], r["model_version"], r["variant"]): r.asDict() for r in rows}


def _by_event(table: pa.Table, column: str) -> dict[str, Any]:
    ids = table.column("event_id").to_pylist()
    return dict(zip(ids, table.column(column).to_pylist(), strict=True))


def _assert_same_predictions(spark: Any, direct: str, through_spark: str) -> None:
    """Both tables hold the same rows, with the same scores (to 1e-12, NaN where NaN)."""
    ours, theirs = _written(spark, direct), _written(spark, through_spark)
    assert ours.keys() == theirs.keys()
    same = ("user_id", "ts", "model_sha256", "features_table_version", "experiment", "served")
    for key, row in ours.items():
        other = theirs[key]
        assert {c: row[c] for c in same} == {c: other[c] for c in same}, key
        if other["score"] is None:  # a non-finite score is written as null
            assert row["score"] is None, key
        else:
            assert abs(row["score"] - other["score"]) <= 1e-12, key


@pytest.mark.parametrize("model", [CHAMPION, CHALLENGER], ids=["sklearn", "keras"])
def test_direct_read_writes_what_spark_read_writes_with_time_travel_and_nan_rows(
    spark: Any, lake: dict[str, Any], history: Any, table_path: Any, model: str
) -> None:
    summaries = {}
    for read in ("spark", "direct"):
        predictions = table_path(f"predictions_{read}")
        summaries[read] = _score(
            spark, lake, predictions, model, features=history["path"],
            features_table_version=0, read=read,
        )  # fmt: skip
        summaries[read + "_path"] = predictions
    through_spark, direct = summaries["spark"], summaries["direct"]
    assert (through_spark.read, direct.read) == ("spark", "direct")
    assert through_spark.read_reason == "asked for (--read spark)"
    assert direct.read_reason.startswith("asked for (--read direct): ")
    for summary in (through_spark, direct):
        assert summary.features_table_version == 0
        assert summary.rows_scored == ROWS
        assert summary.nonfinite_rows == len(history["bad_ids"])
    _assert_same_predictions(spark, summaries["direct_path"], summaries["spark_path"])
    nan_scored = {
        key[0] for key, row in _written(spark, summaries["direct_path"]).items()
        if row["score"] is None
    }  # fmt: skip
    assert nan_scored == set(history["bad_ids"])  # "propagate": NaN, written as null


def test_auto_reads_the_latest_version_directly_and_an_incremental_rerun_through_spark(
    spark: Any, lake: dict[str, Any], history: Any, table_path: Any
) -> None:
    predictions = table_path("predictions")
    request = {"features": history["path"], "incremental": True}
    first = _score(spark, lake, predictions, CHAMPION, **request)
    assert first.read == "direct"
    assert first.read_reason.startswith("auto: ")
    assert first.since_features_version is None  # no earlier run: the whole table
    assert first.features_table_version == 1
    assert first.rows_scored == ROWS
    latest = history["v1"]
    _, predictor = lake["registry"].load(CHAMPION)
    expected = dict(
        zip(
            latest.column("event_id").to_pylist(),
            predictor.predict(scoring._matrix(latest)),
            strict=True,
        )
    )
    written = {key[0]: row for key, row in _written(spark, predictions).items()}
    assert written.keys() == expected.keys()
    for event_id, row in written.items():
        want = expected[event_id]
        if math.isnan(want):  # "propagate": NaN, written as null
            assert row["score"] is None
        else:
            assert abs(row["score"] - want) < 1e-9

    again = _score(spark, lake, predictions, CHAMPION, **request)
    assert again.read == "spark"
    assert "change data feed" in again.read_reason
    assert again.rows_scored == 0


@pytest.fixture
def deleted(spark: Any, table_path: Any) -> tuple[str, set[str]]:
    """A table with deletion vectors on, after a DELETE that left one: its path, its rows."""
    path = table_path("dv_features")
    table = synthetic_features(300, seed=5, days=1)
    (
        spark.createDataFrame(table)
        .write.format("delta")
        .option("delta.enableDeletionVectors", "true")
        .save(path)
    )
    from delta.tables import DeltaTable

    DeltaTable.forPath(spark, path).delete("event_id < 'e000000040'")
    ids = {i for i in table.column("event_id").to_pylist() if i >= "e000000040"}
    return path, ids


def test_a_table_with_deletion_vectors_is_read_by_spark(
    spark: Any, lake: dict[str, Any], deleted: tuple[str, set[str]], table_path: Any
) -> None:
    path, remaining = deleted
    assert any(  # the DELETE left a deletion vector instead of rewriting the file
        "deletionVector" in line and '"add"' in line
        for log in sorted(Path(path, "_delta_log").glob("*.json"))
        for line in log.read_text().splitlines()
    )
    predictions = table_path("predictions")
    with pytest.raises(ScoringError, match="deletionVectors"):
        _score(spark, lake, predictions, CHAMPION, features=path, read="direct")
    assert not Path(predictions).exists()

    summary = _score(spark, lake, predictions, CHAMPION, features=path)
    assert summary.read == "spark"
    assert "deletionVectors" in summary.read_reason
    assert summary.rows_scored == len(remaining)
    assert {key[0] for key in _written(spark, predictions)} == remaining


def test_a_rollout_by_device_routes_the_same_rows_from_either_read(
    spark: Any, lake: dict[str, Any], history: Any, table_path: Any
) -> None:
    spec = MultiModel(
        id="by-device",
        rules=[
            ModelRule(
                when=[Condition(attribute="device", op="eq", value="ios")],
                variant=Variant(name="ios", model=CHALLENGER),
            )
        ],
        default=Variant(name="rest", model=CHAMPION),
    )
    store = RolloutStore(str(lake["registry"].root))
    store.start(RolloutState(model=NAME, spec=spec), who="test", replace_running=True)
    paths, summaries = {}, {}
    for read in ("spark", "direct"):
        paths[read] = table_path(f"predictions_{read}")
        summaries[read] = _score(
            spark, lake, paths[read], f"{NAME}@champion", features=history["path"], read=read
        )
    assert summaries["direct"].read == "direct"
    assert summaries["direct"].variants == summaries["spark"].variants
    _assert_same_predictions(spark, paths["direct"], paths["spark"])
    rows = _written(spark, paths["direct"]).values()
    devices = _by_event(history["v1"], "device")
    assert {r["variant"] for r in rows} == {"ios", "rest"}
    state = store.current(NAME)
    assert state is not None
    router = Router(state)
    for row in rows:
        attributes = {"device": devices[row["event_id"]], "country": "x", "category": "books"}
        assert row["variant"] == router.route(row["user_id"], attributes).variant


def test_the_splits_of_a_big_file_read_every_row_once(tmp_path: Path) -> None:
    """A file cut into byte ranges: each row group in exactly one split, partition values and
    Spark's Arrow types applied, a column the file lacks read as nulls."""
    table = synthetic_features(5000, seed=2, days=1).select(["event_id", "ts", "price"])
    path = tmp_path / "part-0.parquet"
    # Spark writes timestamps as INT96: read back naive, they must come out as UTC.
    pq.write_table(table, path, row_group_size=250, use_deprecated_int96_timestamps=True)
    metadata = pq.ParquetFile(path).metadata
    size = path.stat().st_size
    splits = [FileSplit(str(path), size, (dt.date(2026, 1, 1),), i, 3) for i in range(3)]
    groups = [split.row_groups(metadata) for split in splits]
    assert sorted(g for found in groups for g in found) == list(range(metadata.num_row_groups))
    assert all(groups)  # 20 row groups over 3 ranges: none empty

    schema = pa.schema(
        [
            ("event_id", pa.string()),
            ("ts", pa.timestamp("us", tz="UTC")),
            ("date", pa.date32()),
            ("added_later", pa.float64()),
        ]
    )
    reader = SplitReader(schema, ("date",), batch_size=100)
    batches = [batch for split in splits for batch in reader.read(split)]
    assert max(batch.num_rows for batch in batches) == 100
    read = pa.Table.from_batches(batches, schema=schema)
    assert read.column("event_id").to_pylist() == table.column("event_id").to_pylist()
    assert read.column("ts").to_pylist() == table.column("ts").to_pylist()
    assert set(read.column("date").to_pylist()) == {dt.date(2026, 1, 1)}
    assert read.column("added_later").null_count == table.num_rows
