"""Predictions joined with their realised outcomes, in Spark.

The label of an event (``lakecast.features.training_set``) is a purchase later in the same
session on the same UTC date, so every outcome of a day is final once the day has ended: the
label horizon. A day is *settled* when ``label_delay`` has passed after its end as well (late
events). Outcomes are recomputed from the ``events`` table with the training set's own label
function, so live quality and the holdout figures measure the same thing.

Predictions come from both paths: the batch ``predictions`` table and the archive of the
``predictions`` topic. An event scored by the same version and variant on both paths counts
once (the streamed score: what was served online).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from lakecast.errors import SchemaError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

NO_VARIANT = "default"
"""The variant of a prediction made outside any rollout (a plain batch run)."""
PREDICTION_COLUMNS = ("event_id", "score", "model_name", "model_version", "variant", "path")
JOINED_COLUMNS = ("model_name", "model_version", "variant", "day", "event_id", "score", "label")


def last_settled_day(as_of: datetime, label_delay: timedelta) -> date:
    """The latest UTC date whose outcomes are all known at ``as_of``.

    Raises:
        ValueError: ``as_of`` is naive (it would be read as local time).
    """
    if as_of.tzinfo is None:
        msg = f"last_settled_day: as_of {as_of.isoformat()} has no time zone; give UTC"
        raise ValueError(msg)
    return (as_of.astimezone(UTC) - label_delay).date() - timedelta(days=1)


def _predictions_of(frame: DataFrame, path: str, where: str) -> DataFrame:
    from pyspark.sql import functions as F

    missing = [
        c for c in ("event_id", "score", "model_name", "model_version") if c not in frame.columns
    ]
    if missing:
        msg = f"evaluate quality: {where} lacks columns {missing}"
        raise SchemaError(msg)
    variant = F.col("variant") if "variant" in frame.columns else F.lit(None).cast("string")
    return frame.select(
        "event_id",
        F.col("score").cast("double").alias("score"),
        "model_name",
        "model_version",
        F.coalesce(variant, F.lit(NO_VARIANT)).alias("variant"),
        F.lit(path).alias("path"),
    )


def scored_predictions(batch: DataFrame | None, streamed: DataFrame | None) -> DataFrame:
    """Both paths' predictions, one row per (event, model version, variant).

    Raises:
        SchemaError: neither path is given, or one lacks a needed column.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    parts = []
    if batch is not None:
        parts.append(_predictions_of(batch, "batch", "the batch predictions table"))
    if streamed is not None:
        parts.append(_predictions_of(streamed, "stream", "the predictions topic archive"))
    if not parts:
        msg = "evaluate quality: no predictions table and no predictions archive to read"
        raise SchemaError(msg)
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part)
    key = Window.partitionBy("event_id", "model_name", "model_version", "variant").orderBy(
        F.when(F.col("path") == "stream", 0).otherwise(1)
    )
    return union.withColumn("_n", F.row_number().over(key)).filter("_n = 1").drop("_n")


def realised_outcomes(events: DataFrame, first: date, last: date) -> DataFrame:
    """``event_id``, ``day`` and ``label`` of the valid events of ``[first, last]`` that have one
    (purchases predict nothing and have none)."""
    from pyspark.sql import functions as F

    from lakecast.features.training_set import valid_events, with_purchase_labels

    days = events.filter((F.col("date") >= F.lit(first)) & (F.col("date") <= F.lit(last)))
    labelled = with_purchase_labels(valid_events(days))
    return labelled.filter(F.col("label").isNotNull()).select(
        "event_id", F.col("date").alias("day"), "label"
    )


def joined_outcomes(predictions: DataFrame, outcomes: DataFrame) -> DataFrame:
    """Each prediction of a settled day with its label (:data:`JOINED_COLUMNS`); predictions
    of events with no outcome (purchases, unknown events) drop out, as do NaN scores (counted
    by the scorer, not a probability to judge)."""
    from pyspark.sql import functions as F

    joined = predictions.join(outcomes, on="event_id", how="inner")
    return joined.filter(~F.isnan("score") & F.col("score").isNotNull()).select(*JOINED_COLUMNS)
