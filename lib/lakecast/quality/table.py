"""The ``monitoring/model_quality`` table: outcome metrics per model version, variant and day.

One row per group: count, base rate, AUC (null when the day's labels hold one class), log
loss, Brier score, ECE and the reliability bins (equal-width: rows, mean score and positive
rate per bin). The metrics are computed per group inside Spark's Python workers
(``applyInPandas``) with :mod:`lakecast.quality.metrics`, so a day of millions of predictions
never comes to the driver. Rewriting a day replaces its partition: the job is idempotent.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from lakecast.lake.tables import MODEL_QUALITY, TableSpec
from lakecast.models.evaluation import CALIBRATION_BINS
from lakecast.quality.metrics import quality_figures

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

    from lakecast.lake.delta import Commit

GROUP_COLUMNS = ("model_name", "model_version", "variant", "day")
MODEL_QUALITY_TABLE = TableSpec(
    name=MODEL_QUALITY,
    schema=pa.schema(
        [
            pa.field("model_name", pa.string(), nullable=False),
            pa.field("model_version", pa.string(), nullable=False),
            pa.field("variant", pa.string(), nullable=False),
            pa.field("count", pa.int64(), nullable=False),
            pa.field("base_rate", pa.float64(), nullable=False),
            pa.field("auc", pa.float64(), nullable=True),
            pa.field("log_loss", pa.float64(), nullable=False),
            pa.field("brier", pa.float64(), nullable=False),
            pa.field("ece", pa.float64(), nullable=False),
            pa.field("bin_counts", pa.list_(pa.int64()), nullable=False),
            pa.field("bin_mean_score", pa.list_(pa.float64()), nullable=False),
            pa.field("bin_positive_rate", pa.list_(pa.float64()), nullable=False),
            pa.field("evaluated_at", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("day", pa.date32(), nullable=False),
        ]
    ),
    partition_by=("day",),
)


def _group_figures(bins: int, evaluated_at: datetime) -> Any:
    def figures(frame: pd.DataFrame) -> pd.DataFrame:
        import pandas as pd

        result = quality_figures(frame["label"].to_numpy(), frame["score"].to_numpy(), bins)
        first = frame.iloc[0]
        row = {column: first[column] for column in GROUP_COLUMNS}
        row |= {
            "count": result.count,
            "base_rate": result.base_rate,
            "auc": result.auc,
            "log_loss": result.log_loss,
            "brier": result.brier,
            "ece": result.ece,
            "bin_counts": result.reliability.counts,
            "bin_mean_score": result.reliability.mean_score,
            "bin_positive_rate": result.reliability.positive_rate,
            "evaluated_at": evaluated_at,
        }
        return pd.DataFrame([row])

    return figures


def quality_rows(
    joined: DataFrame, evaluated_at: datetime, bins: int = CALIBRATION_BINS
) -> DataFrame:
    """One ``model_quality`` row per (model, version, variant, day) of ``joined`` (the
    columns of :data:`lakecast.quality.outcomes.JOINED_COLUMNS`)."""
    schema = MODEL_QUALITY_TABLE.spark_schema()
    grouped = joined.groupBy(*GROUP_COLUMNS)
    return grouped.applyInPandas(_group_figures(bins, evaluated_at), schema).select(
        *MODEL_QUALITY_TABLE.columns
    )


def write_quality(rows: DataFrame, path: str, days: Iterable[date], run: dict[str, Any]) -> Commit:
    """Replace the ``days`` partitions of the table at ``path`` with ``rows``."""
    from lakecast.lake.delta import replace_partitions

    return replace_partitions(rows, path, MODEL_QUALITY_TABLE, list(days), run)
