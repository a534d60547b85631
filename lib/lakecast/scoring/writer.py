"""The ``predictions`` table: scores MERGEd by (key, model name, model version), never duplicated.

Re-running a scoring job updates the rows it wrote before instead of adding new ones. Every row
names the model (name, version, sha256), the features table version it was scored from and the
run that wrote it; every commit carries the run's record as JSON ``userMetadata``, which is
also where an incremental run finds the features version the last run read.

Rows scored under a rollout also name the ``variant`` that served them and the ``experiment``
(the rollout id); ``served`` is false only for a shadow model's score. A run without a rollout
leaves ``variant`` and ``experiment`` null. The three columns are nullable and are added to a
table written before they existed by the MERGE itself (schema evolution), in the same commit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"
MODEL_COLUMNS = ("model_name", "model_version")
ROW_MODEL_COLUMNS = ("model_name", "model_version", "model_sha256")
VARIANT_COLUMN = "variant"
EXPERIMENT_COLUMN = "experiment"
SERVED_COLUMN = "served"
TAG_COLUMNS = (VARIANT_COLUMN, EXPERIMENT_COLUMN, SERVED_COLUMN)
RUN_JOB = "score_batch"


@dataclass(frozen=True)
class ScoringRun:
    """Who wrote a batch of predictions, recorded on every row and on the commit."""

    run_id: str
    model_name: str
    model_version: str
    model_sha256: str
    features_path: str
    features_table_version: int
    incremental: bool
    since_features_version: int | None = None
    rollout: dict[str, Any] | None = None  # the rollout that routed the rows (id, revision, ...)

    def commit_metadata(self, **extra: Any) -> str:
        return json.dumps({"job": RUN_JOB, **asdict(self), **extra}, sort_keys=True)


@dataclass(frozen=True)
class ExperimentRows:
    """The ``predictions`` rows a run under a rollout replaces: its experiment's, of its models."""

    experiment: str
    model_names: tuple[str, ...]

    def condition(self) -> str:
        names = ", ".join(_sql_string(name) for name in self.model_names)
        return (
            f"t.{EXPERIMENT_COLUMN} = {_sql_string(self.experiment)} AND t.model_name IN ({names})"
        )


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def with_run_columns(scored: DataFrame, run: ScoringRun) -> DataFrame:
    """``scored`` plus the model, run, time and rollout columns of ``predictions``.

    A frame scored by one model (no ``model_name`` column) gets the run's model on every row,
    no variant or experiment, and ``served`` true. A frame scored under a rollout carries its
    model and rollout columns per row already; they are kept.
    """
    from pyspark.sql import functions as F

    own = (*ROW_MODEL_COLUMNS, *TAG_COLUMNS)
    if "model_name" in scored.columns:
        models = [F.col(c) for c in ROW_MODEL_COLUMNS]
        tags = [F.col(c) for c in TAG_COLUMNS]
    else:
        models = [
            F.lit(run.model_name).alias("model_name"),
            F.lit(run.model_version).alias("model_version"),
            F.lit(run.model_sha256).alias("model_sha256"),
        ]
        tags = [
            F.lit(None).cast("string").alias(VARIANT_COLUMN),
            F.lit(None).cast("string").alias(EXPERIMENT_COLUMN),
            F.lit(True).alias(SERVED_COLUMN),
        ]
    return scored.select(
        *(c for c in scored.columns if c not in own),
        *models,
        F.lit(run.features_table_version).cast("long").alias("features_table_version"),
        F.lit(run.run_id).alias("run_id"),
        F.current_timestamp().alias("scored_at"),
        *tags,
    )


def _create_with(rows: DataFrame, path: str) -> bool:
    """Create the table at ``path`` holding ``rows``; False if a table is already there.

    The first run of a fresh table is a plain write, cheaper than a MERGE into an empty
    table; mode ``errorifexists`` makes a racing creator fail here and MERGE instead.
    """
    from pyspark.errors import AnalysisException

    from lakecast.lake.delta import is_delta_table

    if is_delta_table(rows.sparkSession, path):
        return False
    try:
        (
            rows.write.format("delta")
            .mode("errorifexists")
            .option("delta.enableChangeDataFeed", "true")
            .save(path)
        )
    except AnalysisException as exc:
        if "already exists" not in str(exc).lower() and "PATH_ALREADY_EXISTS" not in str(exc):
            raise
        return False
    return True


def merge_predictions(
    rows: DataFrame,
    path: str,
    key_columns: Sequence[str],
    run: ScoringRun,
    extra_metadata: Mapping[str, Any] | None = None,
    *,
    replace: ExperimentRows | None = None,
) -> int:
    """MERGE ``rows`` (already with run columns) into the table at ``path``; the new version.

    One atomic commit: matched (key, model name, model version) rows are updated, the others
    inserted (the table is created by that commit when there is none); columns ``rows`` has
    and the table lacks are added. ``rows`` must hold each such key at most once.
    With ``replace``, the table's rows of that experiment that ``rows`` did not match are
    deleted in the same commit: the run replaces them.
    """
    from delta.tables import DeltaTable

    from lakecast.lake.delta import table_version

    spark = rows.sparkSession
    condition = " AND ".join(f"t.`{c}` = s.`{c}`" for c in [*key_columns, *MODEL_COLUMNS])
    previous = spark.conf.get(USER_METADATA_CONF, None)
    spark.conf.set(USER_METADATA_CONF, run.commit_metadata(**(extra_metadata or {})))
    try:
        if not _create_with(rows, path):
            table = DeltaTable.forPath(spark, path)
            merge = (
                table.alias("t")
                .merge(rows.alias("s"), condition)
                .whenMatchedUpdateAll()
                .whenNotMatchedInsertAll()
            )
            # A table written before the rollout columns existed holds no experiment's rows.
            if replace is not None and EXPERIMENT_COLUMN in table.toDF().columns:
                merge = merge.whenNotMatchedBySourceDelete(replace.condition())
            merge.withSchemaEvolution().execute()
    finally:
        if previous is None:
            spark.conf.unset(USER_METADATA_CONF)
        else:
            spark.conf.set(USER_METADATA_CONF, previous)
    return table_version(spark, path)


def scoring_runs(spark: SparkSession, path: str) -> list[dict[str, Any]]:
    """The run records of every scoring commit of ``predictions``, newest first ([] if none)."""
    from lakecast.lake.delta import commit_history

    runs = []
    for version, metadata in commit_history(spark, path):
        try:
            record = json.loads(metadata or "{}")
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("job") == RUN_JOB:
            runs.append({**record, "predictions_version": version})
    return runs
