"""``--incremental``: score only the feature rows that changed since the last run of a model.

The last run of the same model version recorded, in its ``predictions`` commit, the features
table version it read (:mod:`lakecast.scoring.writer`). The rows to score now are those whose
latest change in the features table's change data feed, after that version and up to the one
being read, is an insert or an update (a re-extracted date deletes and re-inserts its rows in
one commit: the insert wins). A row whose latest change is a delete is gone and not scored.
Without an earlier run of that model version, everything is scored.

A run under a rollout looks for the last run under the same rollout *revision* instead: a
new revision (a canary step, new bandit weights, a pause) may route users elsewhere, so
everything is scored again. Single-model runs and rollout runs never stand in for each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lakecast.errors import ScoringError
from lakecast.scoring.writer import scoring_runs

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

CDF_COLUMNS = ("_change_type", "_commit_version", "_commit_timestamp")
_KEPT_CHANGES = ("insert", "update_postimage")


def last_scored_features_version(
    spark: SparkSession,
    predictions_path: str,
    model_name: str,
    model_version: str,
    rollout: tuple[str, int] | None = None,
) -> int | None:
    """The features table version the newest run of ``model_name:model_version`` read.

    With ``rollout`` (its id and revision), the newest run of ``model_name`` under that
    rollout revision instead (see the module docstring).
    """
    for run in scoring_runs(spark, predictions_path):
        if run.get("model_name") != model_name or not _same_routing(run, model_version, rollout):
            continue
        found: Any = run.get("features_table_version")
        return int(found) if found is not None else None
    return None


def _same_routing(run: dict[str, Any], model_version: str, rollout: tuple[str, int] | None) -> bool:
    recorded = run.get("rollout")
    if rollout is None:
        return recorded is None and run.get("model_version") == model_version
    if not isinstance(recorded, dict):
        return False
    return (recorded.get("id"), recorded.get("revision")) == rollout


def changed_rows(
    spark: SparkSession,
    features_path: str,
    after_version: int,
    until_version: int,
    key_columns: tuple[str, ...] = ("event_id",),
) -> DataFrame:
    """The current rows of keys changed in versions (``after_version``, ``until_version``].

    Raises:
        ScoringError: the change data feed is not on for that range (or was vacuumed away).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if until_version <= after_version:
        return (
            spark.read.format("delta")
            .option("versionAsOf", until_version)
            .load(features_path)
            .limit(0)
        )
    changes = (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", after_version + 1)
        .option("endingVersion", until_version)
        .load(features_path)
    )
    kept = F.col("_change_type").isin(*_KEPT_CHANGES)
    latest_first = Window.partitionBy(*key_columns).orderBy(
        F.col("_commit_version").desc(), kept.desc()
    )
    latest = (
        changes.filter(F.col("_change_type") != "update_preimage")
        .withColumn("_rank", F.row_number().over(latest_first))
        .filter((F.col("_rank") == 1) & kept)
    )
    try:
        latest.schema  # noqa: B018 - resolving the plan surfaces a disabled change feed now
    except Exception as exc:
        msg = (
            f"incremental scoring: cannot read the change data feed of {features_path} for "
            f"versions {after_version + 1}..{until_version} ({exc}); enable "
            "delta.enableChangeDataFeed on the table or run without --incremental"
        )
        raise ScoringError(msg) from exc
    return latest.drop("_rank", *CDF_COLUMNS)
