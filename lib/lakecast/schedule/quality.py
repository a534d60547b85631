"""The daily run's ``report`` step: what the ``predictions`` table holds for a date, per model
version and variant (row counts and the score distribution), written to ``reports/daily_quality``.

It needs no labels, so it is there the moment the day is scored; the outcome figures (AUC,
calibration per version and day) come later from the ``quality`` step, in ``model_quality``
(:mod:`lakecast.schedule.loop_steps`). The date of a prediction is the UTC date of its event's
``ts``. Replacing the date's partition makes the step idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

HISTOGRAM_BINS = 10  # equal-width bins over [0, 1]: scores are probabilities
QUANTILES = (0.1, 0.5, 0.9)
GROUP_COLUMNS = ("model_name", "model_version", "variant", "served")


@dataclass(frozen=True)
class QualitySummary:
    """What the report step wrote for a date."""

    run_date: str
    groups: list[dict[str, Any]]
    report_table_version: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_date": self.run_date,
            "groups": self.groups,
            "report_table_version": self.report_table_version,
            "kind": "predictions_summary",  # not outcome quality: see the module docstring
        }


def daily_report(predictions: DataFrame, run_date: date) -> DataFrame:
    """One row per (model name, version, variant, served) of ``run_date``'s predictions."""
    from pyspark.sql import functions as F

    day = predictions.filter(F.to_date(F.col("ts")) == F.lit(run_date))
    for column, kind in (("variant", "string"), ("served", "boolean")):
        if column not in day.columns:  # a table written before rollouts tagged rows
            day = day.withColumn(column, F.lit(None).cast(kind))
    score = F.col("score")
    finite = F.when(~F.isnan(score), score)
    bin_index = F.least(F.floor(finite * HISTOGRAM_BINS), F.lit(HISTOGRAM_BINS - 1))
    histogram = [
        F.sum(F.when(bin_index == i, 1).otherwise(0)).cast("long") for i in range(HISTOGRAM_BINS)
    ]
    # Sums of doubles depend on the order Spark adds them in, which depends on how the table's
    # files were written: a day run out of order gave means 1 ulp apart. Decimal sums are
    # exact, so the report is the same however the dates were run.
    n = F.count(finite)
    total = F.sum(finite.cast(_EXACT))
    squares = F.sum((finite * finite).cast(_EXACT))
    mean = total / n
    return day.groupBy(*GROUP_COLUMNS).agg(
        F.count(F.lit(1)).alias("rows"),
        (F.count(F.lit(1)) - n).alias("nonfinite_rows"),
        mean.cast("double").alias("score_mean"),
        F.sqrt(F.greatest((squares / n - mean * mean).cast("double"), F.lit(0.0))).alias(
            "score_std"
        ),
        F.min(finite).alias("score_min"),
        *(F.percentile(finite, q).alias(f"score_p{int(q * 100)}") for q in QUANTILES),
        F.max(finite).alias("score_max"),
        F.array(*histogram).alias("score_histogram"),
        F.lit(run_date).alias("date"),
    )


_EXACT = "decimal(38,18)"  # scores are in [0, 1]: 20 integer digits are plenty for any sum


def write_daily_report(
    spark: SparkSession, predictions_path: str, report_path: str, run_date: date
) -> QualitySummary:
    """Replace ``run_date``'s rows of the report table with the report of that date."""
    from lakecast.lake.delta import is_delta_table, write_replacing

    if is_delta_table(spark, predictions_path):
        report = daily_report(spark.read.format("delta").load(predictions_path), run_date)
    else:  # nothing scored yet: an empty report, with the report's columns
        report = daily_report(_empty_predictions(spark), run_date)
    rows = report.orderBy(*GROUP_COLUMNS).collect()
    version = write_replacing(
        report,
        report_path,
        partition_by=("date",),
        replace_where=f"date = DATE'{run_date.isoformat()}'",
    )
    groups = [
        {
            **{column: row[column] for column in GROUP_COLUMNS},
            "rows": int(row["rows"]),
            "score_mean": row["score_mean"],
            "score_p50": row["score_p50"],
        }
        for row in rows
    ]
    return QualitySummary(run_date.isoformat(), groups, version)


def _empty_predictions(spark: SparkSession) -> DataFrame:
    schema = (
        "event_id STRING, ts TIMESTAMP, score DOUBLE, model_name STRING, model_version STRING, "
        "variant STRING, served BOOLEAN"
    )
    return spark.createDataFrame([], schema)
