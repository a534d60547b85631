"""Batch scoring on a real local Spark + Delta: equality with in-process predict, idempotent
MERGE, bad input stopping the job before any write, NaN policy counting, incremental runs."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from lakecast.errors import ModelIntegrityError, ModelNotFoundError, SchemaError, ScoringError
from lakecast.features.spec import FEATURE_COLUMNS
from lakecast.models.training import GradientBoostingRecipe, MlpRecipe
from lakecast.models.training_run import model_signature
from lakecast.registry import Registry
from lakecast.scoring.run import ScoringRequest, score_batch
from lakecast.testing.features import synthetic_feature_matrix, synthetic_features

ROWS = 1200
NAME = "propensity"


def _write(spark: Any, table: pa.Table, path: str) -> None:
    spark.createDataFrame(table).write.format("delta").partitionBy("date").save(path)


def _version(spark: Any, path: str) -> int | None:
    from lakecast.lake.delta import is_delta_table, table_version

    return table_version(spark, path) if is_delta_table(spark, path) else None


def _predictions(spark: Any, path: str) -> dict[tuple[str, str], dict[str, Any]]:
    rows = spark.read.format("delta").load(path).collect()
    return {(r["event_id"], r["model_version"]): r.asDict() for r in rows}


@pytest.fixture(scope="module")
def lake(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A features table and a registry with an sklearn (1.0.0, champion) and a Keras version
    (1.1.0, challenger), both trained on synthetic rows with a planted signal."""
    root = tmp_path_factory.mktemp("scoring")
    features = str(root / "features")
    table = synthetic_features(ROWS, seed=3, days=3)
    _write(spark, table, features)
    train_x, train_y = synthetic_feature_matrix(3000, seed=11)
    registry = Registry(root / "registry")
    boosted = GradientBoostingRecipe(max_iter=30, seed=1).fit(train_x, train_y)
    sk = registry.register(
        NAME, boosted, flavor="sklearn", signature=model_signature(), nan_policy="propagate"
    )
    registry.promote(NAME, sk.version, "champion")
    mlp = MlpRecipe(hidden=(16,), epochs=1, batch_size=256, seed=1).fit(train_x, train_y)
    ks = registry.register(
        NAME, mlp, flavor="keras", signature=model_signature(), nan_policy="propagate"
    )
    registry.promote(NAME, ks.version, "challenger")
    return {"root": root, "features": features, "registry": registry, "table": table}


def _request(lake: dict[str, Any], predictions: str, model: str, **more: Any) -> ScoringRequest:
    return ScoringRequest(
        model=model,
        features_path=more.pop("features", lake["features"]),
        predictions_path=predictions,
        registry_root=str(lake["registry"].root),
        batch_size=more.pop("batch_size", 500),
        **more,
    )


def _matrix(table: pa.Table) -> np.ndarray:
    return np.column_stack([table.column(c).to_numpy() for c in FEATURE_COLUMNS])


@pytest.fixture(scope="module")
def scored(spark: Any, lake: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A predictions table after: champion, champion again (another batch size), challenger."""
    predictions = str(tmp_path_factory.mktemp("predictions") / "predictions")
    first = score_batch(spark, _request(lake, predictions, f"{NAME}@champion"))
    again = score_batch(spark, _request(lake, predictions, f"{NAME}@champion", batch_size=77))
    challenger = score_batch(spark, _request(lake, predictions, f"{NAME}@challenger"))
    return predictions, {"first": first, "again": again, "challenger": challenger}


@pytest.mark.parametrize(("alias", "run"), [("champion", "again"), ("challenger", "challenger")])
def test_spark_scores_equal_in_process_predict(
    spark: Any, lake: dict[str, Any], scored: Any, alias: str, run: str
) -> None:
    predictions, summaries = scored
    summary = summaries[run]
    record, predictor = lake["registry"].load(f"{NAME}@{alias}")
    table = lake["table"]
    expected = dict(
        zip(table.column("event_id").to_pylist(), predictor.predict(_matrix(table)), strict=True)
    )
    written = {
        eid: row for (eid, version), row in _predictions(spark, predictions).items()
        if version == record.version
    }  # fmt: skip
    assert summary.rows_scored == ROWS
    assert summary.model_version == record.version
    assert len(written) == ROWS
    assert max(abs(row["score"] - expected[eid]) for eid, row in written.items()) < 1e-6
    sample = next(iter(written.values()))
    assert sample["model_name"] == NAME
    assert sample["model_sha256"] == record.sha256
    assert sample["features_table_version"] == _version(spark, lake["features"])
    assert sample["run_id"] == summary.run_id


def test_rerun_updates_rows_and_never_duplicates(spark: Any, scored: Any) -> None:
    predictions, summaries = scored
    frame = spark.read.format("delta").load(predictions)
    keys = frame.select("event_id", "model_name", "model_version")
    assert frame.count() == 2 * ROWS  # champion and challenger, once each
    assert keys.distinct().count() == 2 * ROWS
    champion_runs = {
        r["run_id"] for r in frame.filter(f"model_version = '{summaries['again'].model_version}'")
        .select("run_id").distinct().collect()
    }  # fmt: skip
    assert champion_runs == {summaries["again"].run_id}
    first, again = summaries["first"], summaries["again"]
    assert again.predictions_table_version == first.predictions_table_version + 1


def test_missing_and_mistyped_columns_stop_before_any_write(
    spark: Any, lake: dict[str, Any], scored: Any, table_path: Any
) -> None:
    predictions = scored[0]
    before = _version(spark, predictions)
    table = lake["table"]
    dropped, retyped = FEATURE_COLUMNS[3], FEATURE_COLUMNS[7]
    broken = table.drop_columns([dropped]).set_column(
        table.schema.get_field_index(retyped) - 1,
        retyped,
        pa.array([str(v) for v in table.column(retyped).to_pylist()]),
    )
    bad_features = table_path("bad_features")
    _write(spark, broken, bad_features)
    with pytest.raises(SchemaError) as caught:
        score_batch(spark, _request(lake, predictions, f"{NAME}@champion", features=bad_features))
    message = str(caught.value)
    assert repr(dropped) in message
    assert f"{retyped!r} is string" in message
    assert _version(spark, predictions) == before
    # On a table that was never written, nothing is created either.
    fresh = table_path("predictions")
    with pytest.raises(SchemaError):
        score_batch(spark, _request(lake, fresh, f"{NAME}@challenger", features=bad_features))
    assert not Path(fresh).exists()


def _with_nonfinite(table: pa.Table) -> tuple[pa.Table, list[str]]:
    """The table with NaN, +inf and -inf planted in some rows of two feature columns."""
    nan_rows = [0, 5, 17]
    inf_rows = [8, 40]
    values = {c: table.column(c).to_numpy().copy() for c in FEATURE_COLUMNS[:2]}
    values[FEATURE_COLUMNS[0]][nan_rows] = np.nan
    values[FEATURE_COLUMNS[1]][inf_rows] = [np.inf, -np.inf]
    for name, array in values.items():
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(array))
    ids = table.column("event_id").to_pylist()
    return table, [ids[i] for i in nan_rows + inf_rows]


def test_nonfinite_features_follow_the_policy_and_are_counted(
    spark: Any, lake: dict[str, Any], table_path: Any
) -> None:
    table, bad_ids = _with_nonfinite(lake["table"])
    features = table_path("nan_features")
    _write(spark, table, features)
    predictions = table_path("predictions")
    summary = score_batch(spark, _request(lake, predictions, f"{NAME}@champion", features=features))
    assert summary.nonfinite_rows == len(bad_ids)
    written = _predictions(spark, predictions)
    # The policy is "propagate": those rows score NaN, which is written as null (no
    # prediction), never as a score, and counted per version in the summary and the commit.
    null_scored = {eid for (eid, _), row in written.items() if row["score"] is None}
    assert null_scored == set(bad_ids)
    assert all(np.isfinite(row["score"]) for row in written.values() if row["score"] is not None)
    ref = f"{NAME}:{summary.model_version}"
    assert summary.nonfinite_scores == {ref: len(bad_ids)}
    history = spark.sql(f"DESCRIBE HISTORY delta.`{predictions}`").orderBy("version").collect()
    assert json.loads(history[-1]["userMetadata"])["nonfinite_scores"] == {ref: len(bad_ids)}

    # The same artifact under the "error" policy refuses the batch: nothing is written.
    registry: Registry = lake["registry"]
    champion = registry.resolve(f"{NAME}@champion")
    strict = registry.register(
        "strict", artifact=champion.artifact_path, signature=model_signature(), nan_policy="error"
    )
    before = _version(spark, predictions)
    with pytest.raises(ScoringError, match="NaN or infinite"):
        score_batch(spark, _request(lake, predictions, strict.ref, features=features))
    assert _version(spark, predictions) == before
    assert "strict" not in {
        r["model_name"] for r in spark.read.format("delta").load(predictions).collect()
    }

    # "impute_zero": the bad rows are scored as if the values were 0.
    imputing = registry.register(
        "imputing", artifact=champion.artifact_path, signature=model_signature(),
        nan_policy="impute_zero",
    )  # fmt: skip
    summary = score_batch(spark, _request(lake, predictions, imputing.ref, features=features))
    assert summary.nonfinite_rows == len(bad_ids)
    _, predictor = registry.load(imputing.ref)
    matrix = _matrix(table)
    zeroed = np.where(np.isfinite(matrix), matrix, 0.0)
    expected = dict(
        zip(table.column("event_id").to_pylist(), predictor.predict(zeroed), strict=True)
    )
    rows = spark.read.format("delta").load(predictions).filter("model_name = 'imputing'").collect()
    assert len(rows) == ROWS
    assert max(abs(r["score"] - expected[r["event_id"]]) for r in rows) < 1e-6


def test_unknown_model_alias_version_and_tampered_artifact_write_nothing(
    spark: Any, lake: dict[str, Any], scored: Any, tmp_path: Path
) -> None:
    predictions = scored[0]
    before = _version(spark, predictions)
    for reference, found in [
        ("nosuchmodel@champion", "nosuchmodel"),
        (f"{NAME}@nosuchalias", "nosuchalias"),
        (f"{NAME}:9.9.9", "9.9.9"),
    ]:
        with pytest.raises(ModelNotFoundError, match=found):
            score_batch(spark, _request(lake, predictions, reference))
    # A registry of its own, so tampering does not touch the shared artifacts.
    registry = Registry(tmp_path / "registry")
    x, y = synthetic_feature_matrix(500, seed=5)
    record = registry.register(
        "tampered", GradientBoostingRecipe(max_iter=5).fit(x, y), flavor="sklearn",
        signature=model_signature(), nan_policy="propagate",
    )  # fmt: skip
    artifact = Path(record.artifact_path)
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    request = ScoringRequest(
        model=record.ref,
        features_path=lake["features"],
        predictions_path=predictions,
        registry_root=str(registry.root),
    )
    with pytest.raises(ModelIntegrityError, match="sha256"):
        score_batch(spark, request)
    assert _version(spark, predictions) == before


def test_incremental_scores_only_rows_changed_since_the_last_run(
    spark: Any, lake: dict[str, Any], table_path: Any
) -> None:
    features = table_path("features")
    table = lake["table"]
    _write(spark, table, features)
    predictions = table_path("predictions")
    model = f"{NAME}@champion"
    first = score_batch(
        spark, _request(lake, predictions, model, features=features, incremental=True)
    )
    assert first.rows_scored == ROWS  # no earlier run: everything
    assert first.since_features_version is None

    nothing = score_batch(
        spark, _request(lake, predictions, model, features=features, incremental=True)
    )
    assert nothing.rows_scored == 0
    assert nothing.predictions_table_version is None

    # Re-extract one date with new values: exactly its rows must be scored again.
    day = dt.date(2026, 1, 2)
    changed = table.filter(pa.compute.equal(table.column("date"), pa.scalar(day, pa.date32())))
    shifted = changed.set_column(
        changed.schema.get_field_index(FEATURE_COLUMNS[0]),
        FEATURE_COLUMNS[0],
        pa.compute.add(changed.column(FEATURE_COLUMNS[0]), 3.0),
    )
    (
        spark.createDataFrame(shifted)
        .write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", f"date = DATE'{day.isoformat()}'")
        .save(features)
    )
    before = _predictions(spark, predictions)
    again = score_batch(
        spark, _request(lake, predictions, model, features=features, incremental=True)
    )
    assert again.since_features_version == first.features_table_version
    assert again.rows_scored == shifted.num_rows
    after = _predictions(spark, predictions)
    assert len(after) == ROWS
    changed_ids = set(shifted.column("event_id").to_pylist())
    rewritten = {eid for (eid, _), row in after.items() if row["run_id"] == again.run_id}
    assert rewritten == changed_ids
    moved = [eid for (eid, v), row in after.items() if row["score"] != before[(eid, v)]["score"]]
    assert set(moved) <= changed_ids
    assert moved  # the shift changed some scores
