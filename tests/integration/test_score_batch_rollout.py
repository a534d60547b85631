"""Batch scoring under a rollout, on a real local Spark, real Delta and a real registry: every
variant scored in one run, each user's rows by the variant the streaming workers route that
user to, scores equal to each version's in-process predict, re-runs that never duplicate."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from lakecast.models.training_run import model_signature
from lakecast.registry import Registry
from lakecast.rollout.flags import Condition
from lakecast.rollout.router import Router
from lakecast.rollout.store import RolloutStore
from lakecast.rollout.strategies import (
    ABTest,
    Canary,
    ModelRule,
    MultiModel,
    RolloutState,
    Shadow,
    Variant,
    WeightedVariant,
)
from lakecast.scoring.run import ScoringSummary, score_batch
from lakecast.serving.model_source import ModelSource
from lakecast.serving.routing import SHADOW, BatchRouter, StaticRouting
from tests.integration import test_score_batch as scoring

NAME, ROWS = scoring.NAME, scoring.ROWS
CHAMPION, CHALLENGER = f"{NAME}:1.0.0", f"{NAME}:1.1.0"
TAGS = ("variant", "experiment", "served")

# The features table and the registry (sklearn 1.0.0 champion, Keras 1.1.0) of the
# single-model tests, built once for this module.
lake = scoring.lake


def _start(lake: dict[str, Any], spec: Any) -> RolloutState:
    """Record ``spec`` as the model's rollout, as ``lakecast deploy`` does; the stored state."""
    store = RolloutStore(str(lake["registry"].root))
    store.start(RolloutState(model=NAME, spec=spec), who="test", replace_running=True)
    state = store.current(NAME)
    assert state is not None
    return state


def _score(
    spark: Any, lake: dict[str, Any], predictions: str, model: str, **more: Any
) -> ScoringSummary:
    return score_batch(spark, scoring._request(lake, predictions, model, **more))


def _rows(spark: Any, path: str) -> list[dict[str, Any]]:
    return [row.asDict() for row in spark.read.format("delta").load(path).collect()]


def _expected(
    lake: dict[str, Any], reference: str, table: pa.Table | None = None
) -> dict[str, float]:
    """Event id -> the score ``reference`` gives in process, without Spark."""
    table = lake["table"] if table is None else table
    _, predictor = lake["registry"].load(reference)
    scores = predictor.predict(scoring._matrix(table))
    return dict(zip(table.column("event_id").to_pylist(), scores, strict=True))


def _assert_scores_match(lake: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    by_version: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_version[row["model_version"]].append(row)
    for version, written in by_version.items():
        expected = _expected(lake, f"{NAME}:{version}")
        assert max(abs(r["score"] - expected[r["event_id"]]) for r in written) < 1e-6


def _ids(lake: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The event ids and the user ids of the features rows, in the same order."""
    table = lake["table"]
    return table.column("event_id").to_pylist(), table.column("user_id").to_pylist()


def _worker_variants(lake: dict[str, Any], state: RolloutState, users: list[str]) -> dict[str, str]:
    """User -> variant, as the streaming worker's own routing code plans a micro-batch."""
    models = ModelSource(lake["registry"], f"{NAME}@champion")
    plan = BatchRouter(models, StaticRouting(state)).plan(users)
    return {users[int(i)]: group.variant for group in plan.serving for i in group.positions}


CANARY_30 = Canary(id="canary-30", champion=CHAMPION, candidate=CHALLENGER, steps=(30, 60, 100))
AB_70_30 = ABTest(
    id="ab-70-30",
    split=[
        WeightedVariant(name="control", model=CHAMPION, weight=70),
        WeightedVariant(name="treatment", model=CHALLENGER, weight=30),
    ],
)


@pytest.mark.parametrize(
    ("spec", "challenger"),
    [(CANARY_30, "candidate"), (AB_70_30, "treatment")],
    ids=["canary", "ab"],
)
def test_one_run_scores_both_versions_routed_as_the_workers_route(
    spark: Any, lake: dict[str, Any], table_path: Any, spec: Any, challenger: str
) -> None:
    state = _start(lake, spec)
    predictions = table_path("predictions")
    summary = _score(spark, lake, predictions, f"{NAME}@champion")
    rows = _rows(spark, predictions)

    assert summary.rows_scored == ROWS
    assert summary.rollout is not None
    assert (summary.rollout["id"], summary.rollout["revision"]) == (spec.id, state.revision)
    assert len(rows) == ROWS
    assert len({r["event_id"] for r in rows}) == ROWS
    assert {r["experiment"] for r in rows} == {spec.id}
    assert all(r["served"] for r in rows)
    assert {r["model_version"] for r in rows} == {"1.0.0", "1.1.0"}

    variants_of: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        variants_of[row["user_id"]].add(row["variant"])
        assert f"{NAME}:{row['model_version']}" == spec.variant(row["variant"]).model
    assert all(len(found) == 1 for found in variants_of.values())  # sticky per user
    batch = {user: found.pop() for user, found in variants_of.items()}
    router = Router(state)
    assert batch == {user: router.route(user).variant for user in batch}
    assert batch == _worker_variants(lake, state, sorted(batch))

    share = sum(v == challenger for v in batch.values()) / len(batch)
    assert 0.25 < share < 0.35, share  # 30 % of ~1,000 users
    counted = {(v["variant"], v["model_version"]): v["rows"] for v in summary.variants}
    assert sum(counted.values()) == ROWS
    assert counted[(challenger, "1.1.0")] == sum(r["variant"] == challenger for r in rows)
    _assert_scores_match(lake, rows)

    again = _score(spark, lake, predictions, f"{NAME}@champion")
    rerun = _rows(spark, predictions)
    assert len(rerun) == ROWS
    assert {r["run_id"] for r in rerun} == {again.run_id}
    assert {(r["event_id"], r["variant"]) for r in rerun} == {
        (r["event_id"], r["variant"]) for r in rows
    }
    assert again.predictions_table_version == summary.predictions_table_version + 1


def test_a_later_canary_step_replaces_the_experiment_rows_and_incremental_follows_revisions(
    spark: Any, lake: dict[str, Any], table_path: Any
) -> None:
    state = _start(lake, CANARY_30)
    predictions = table_path("predictions")
    first = _score(spark, lake, predictions, f"{NAME}@champion", incremental=True)
    assert first.since_features_version is None
    nothing = _score(spark, lake, predictions, f"{NAME}@champion", incremental=True)
    assert nothing.rows_scored == 0  # same revision, no changed rows

    store = RolloutStore(str(lake["registry"].root))
    step = CANARY_30.advanced().model_dump()
    store.update(NAME, lambda current, ctl: (current.next_revision(spec=step), ctl), who="test")
    advanced = store.current(NAME)
    assert advanced is not None and advanced.revision == state.revision + 1
    # A new revision routes users elsewhere: an incremental run scores everything again.
    second = _score(spark, lake, predictions, f"{NAME}@champion", incremental=True)
    assert second.since_features_version is None
    assert second.rows_scored == ROWS
    rows = _rows(spark, predictions)
    assert len(rows) == ROWS  # users who moved to the candidate lost their champion row
    router = Router(advanced)
    assert all(r["variant"] == router.route(r["user_id"]).variant for r in rows)
    share = sum(r["variant"] == "candidate" for r in rows) / ROWS
    assert 0.55 < share < 0.65, share
    _assert_scores_match(lake, rows)


def test_shadow_rows_are_written_unserved_for_the_sampled_users(
    spark: Any, lake: dict[str, Any], table_path: Any
) -> None:
    spec = Shadow(id="shadow-50", champion=CHAMPION, shadows=(CHALLENGER,), shadow_percent=50)
    state = _start(lake, spec)
    predictions = table_path("predictions")
    summary = _score(spark, lake, predictions, NAME)
    rows = _rows(spark, predictions)
    served = [r for r in rows if r["served"]]
    shadows = [r for r in rows if not r["served"]]

    assert summary.rows_scored == ROWS
    assert len(served) == ROWS
    assert {(r["variant"], r["model_version"]) for r in served} == {("champion", "1.0.0")}
    assert {(r["variant"], r["model_version"]) for r in shadows} == {(SHADOW, "1.1.0")}
    assert {r["experiment"] for r in rows} == {"shadow-50"}
    router = Router(state)
    sampled = {e for e, u in zip(*_ids(lake), strict=True) if router.route(u).shadows}
    assert {r["event_id"] for r in shadows} == sampled
    assert 0.4 < len(sampled) / ROWS < 0.6
    counted = {(v["variant"], v["served"]): v["rows"] for v in summary.variants}
    assert counted == {("champion", True): ROWS, (SHADOW, False): len(sampled)}
    _assert_scores_match(lake, rows)

    _score(spark, lake, predictions, NAME)
    assert len(_rows(spark, predictions)) == ROWS + len(sampled)


def test_multi_model_routes_rows_by_their_attributes(
    spark: Any, lake: dict[str, Any], table_path: Any
) -> None:
    table = lake["table"]
    devices = np.where(np.arange(table.num_rows) % 3 == 0, "ios", "web")
    table = table.set_column(
        table.schema.get_field_index("device"), "device", pa.array(devices, pa.string())
    )
    features = table_path("features")
    scoring._write(spark, table, features)
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
    state = _start(lake, spec)
    predictions = table_path("predictions")
    _score(spark, lake, predictions, f"{NAME}@champion", features=features)
    rows = {r["event_id"]: r for r in _rows(spark, predictions)}
    router = Router(state)
    columns = ("event_id", "user_id", "device", "country", "category")
    for event_id, user_id, *values in zip(
        *(table.column(c).to_pylist() for c in columns), strict=True
    ):
        attributes = dict(zip(columns[2:], values, strict=True))
        assert rows[event_id]["variant"] == router.route(user_id, attributes).variant
    assert {r["variant"] for r in rows.values()} == {"ios", "rest"}
    expected = {"ios": _expected(lake, CHALLENGER, table), "rest": _expected(lake, CHAMPION, table)}
    assert max(abs(r["score"] - expected[r["variant"]][e]) for e, r in rows.items()) < 1e-6


def test_ignore_rollout_and_pinned_references_score_one_version(
    spark: Any, lake: dict[str, Any], table_path: Any
) -> None:
    _start(lake, CANARY_30)
    predictions = table_path("predictions")
    ignored = _score(spark, lake, predictions, f"{NAME}@champion", ignore_rollout=True)
    pinned = _score(spark, lake, predictions, CHALLENGER)
    assert ignored.rollout is None and pinned.rollout is None
    rows = _rows(spark, predictions)
    assert len(rows) == 2 * ROWS
    assert {(r["model_version"], r["variant"], r["experiment"], r["served"]) for r in rows} == {
        ("1.0.0", None, None, True),
        ("1.1.0", None, None, True),
    }
    _assert_scores_match(lake, rows)


def test_no_rollout_scores_as_before_and_old_tables_gain_the_columns(
    spark: Any, lake: dict[str, Any], table_path: Any, tmp_path: Path
) -> None:
    # A registry of its own that never had a rollout, holding the same champion artifact.
    registry = Registry(tmp_path / "registry")
    champion = lake["registry"].resolve(f"{NAME}@champion")
    record = registry.register(
        NAME, artifact=champion.artifact_path, signature=model_signature(), nan_policy="propagate"
    )
    registry.promote(NAME, record.version, "champion")
    plain = {**lake, "registry": registry}
    predictions = table_path("predictions")
    summary = _score(spark, plain, predictions, f"{NAME}@champion")
    assert summary.rollout is None and summary.variants == []
    assert summary.rows_scored == ROWS
    rows = _rows(spark, predictions)
    assert len(rows) == ROWS
    assert {(r["variant"], r["experiment"], r["served"]) for r in rows} == {(None, None, True)}
    _assert_scores_match(lake, rows)

    # A table written before the rollout columns existed: a rollout run adds them in its MERGE.
    old = table_path("old_predictions")
    spark.read.format("delta").load(predictions).drop(*TAGS).write.format("delta").save(old)
    _start(lake, CANARY_30)
    _score(spark, lake, old, f"{NAME}@champion")
    frame = spark.read.format("delta").load(old)
    assert set(TAGS) <= set(frame.columns)
    written = [row.asDict() for row in frame.collect()]
    before = [r for r in written if r["experiment"] is None]
    assert before and all(r["variant"] is None and r["model_version"] == "1.0.0" for r in before)
    routed = [r for r in written if r["experiment"] == CANARY_30.id]
    assert len(routed) == ROWS
    # Champion rows were updated in place (same key); the candidate's users got new rows.
    assert len(written) == ROWS + sum(r["variant"] == "candidate" for r in routed)
