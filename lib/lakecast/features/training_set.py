"""The ``features`` table: one row per event, its ordered model inputs and its label.

Rows are built from three parts: the point-in-time entity features (Spark SQL windows that see
only strictly earlier events), the per-event transforms (the shared Arrow code, run inside
``mapInArrow``) and the label. The label is deterministic and needs nothing beyond the event's
own date, so that re-running any one date gives the same rows:

    label = 1 if the same user made a purchase later (strictly greater ts) in the same session
            on the same UTC date, else 0; null for purchase events (nothing to predict).

Training takes the rows with a label; batch scoring takes all rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakecast.errors import SchemaError
from lakecast.features.pit import point_in_time_features
from lakecast.features.spec import (
    EVENT_FEATURE_COLUMNS,
    FEATURE_COLUMNS,
    FEATURES_VERSION,
    LABEL_COLUMN,
)
from lakecast.features.transforms import FeatureLookups, with_event_features
from lakecast.features.vocab import CATEGORIES, EVENT_TYPES

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

ArrowMapper = Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]


def valid_event_condition() -> Column:
    """True for the events features can be computed for: the Spark mirror of
    :func:`lakecast.features.transforms.validate_event_batch`."""
    from pyspark.sql import functions as F

    price = F.col("price")
    return (
        F.col("category").isin(list(CATEGORIES))
        & F.col("event_type").isin(list(EVENT_TYPES))
        & price.isNotNull()
        & ~F.isnan(price)
        & (price >= 0)
        & (price < float("inf"))
        & F.col("ts").isNotNull()
        & (F.length("event_id") > 0)
        & (F.length("user_id") > 0)
        & (F.length("session_id") > 0)
        & (F.length("product_id") > 0)
    )


def valid_events(events: DataFrame) -> DataFrame:
    """The events that pass :func:`valid_event_condition`."""
    return events.filter(valid_event_condition())


def with_purchase_labels(events: DataFrame) -> DataFrame:
    """``events`` with ``label`` (int, see the module docstring)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    later_in_session = (
        Window.partitionBy("user_id", "session_id", "date")
        .orderBy(F.unix_micros("ts"))
        .rangeBetween(1, Window.unboundedFollowing)
    )
    purchased_later = F.max((F.col("event_type") == "purchase").cast("int")).over(later_in_session)
    label = F.when(F.col("event_type") == "purchase", F.lit(None)).otherwise(
        F.coalesce(purchased_later, F.lit(0))
    )
    return events.withColumn(LABEL_COLUMN, label.cast("int"))


def event_feature_mapper(references: Mapping[date, Mapping[str, float]]) -> ArrowMapper:
    """The ``mapInArrow`` function: per-event features with each date's price reference."""
    frozen = {day: dict(means) for day, means in references.items()}

    def apply(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            days = batch.column("date")
            for day in pc.unique(days).to_pylist():
                part = batch.filter(pc.equal(days, pa.scalar(day, days.type)))
                yield with_event_features(part, FeatureLookups(frozen.get(day, {})))

    return apply


def feature_rows(
    events: DataFrame, references: Mapping[date, Mapping[str, float]], dates: Iterable[date]
) -> DataFrame:
    """Rows of the ``features`` table for the events of ``dates``.

    Args:
        events: valid events of ``dates`` and of the ``LOOKBACK_DAYS`` before the earliest.
        references: the category price reference of each date (aggregates.price_references).
        dates: the dates to produce rows for; the other events only serve as history.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, StructField, StructType

    from lakecast.lake.tables import FEATURES

    labelled = with_purchase_labels(point_in_time_features(events))
    wanted = labelled.filter(F.col("date").isin(sorted(set(dates))))
    schema = StructType(
        [
            *wanted.schema.fields,
            *(StructField(c, DoubleType(), True) for c in EVENT_FEATURE_COLUMNS),
        ]
    )
    mapped = wanted.mapInArrow(event_feature_mapper(references), schema)
    rows = mapped.withColumn("features_version", F.lit(FEATURES_VERSION))
    return rows.select(
        *(F.col(field.name).cast(field.dataType) for field in FEATURES.spark_schema().fields)
    )


def training_set(features: DataFrame) -> DataFrame:
    """The labelled rows of a ``features`` DataFrame: ids, ts, ``FEATURE_COLUMNS`` and label."""
    from pyspark.sql import functions as F

    return features.filter(F.col(LABEL_COLUMN).isNotNull()).select(
        "event_id", "user_id", "ts", "date", *FEATURE_COLUMNS, LABEL_COLUMN
    )


def feature_matrix(table: pa.Table | pa.RecordBatch) -> np.ndarray:
    """The ``FEATURE_COLUMNS`` of Arrow ``features`` rows as an (n, k) float64 matrix.

    Raises:
        SchemaError: a column is missing, or the rows were built by another features version.
    """
    names = set(table.schema.names)
    missing = [name for name in FEATURE_COLUMNS if name not in names]
    if missing:
        msg = f"feature matrix: rows lack feature columns {missing}"
        raise SchemaError(msg)
    if "features_version" in names:
        versions = set(pc.unique(table.column("features_version")).to_pylist())
        if versions - {FEATURES_VERSION}:
            msg = (
                f"feature matrix: rows were built by features version(s) {sorted(versions)}, "
                f"this code is {FEATURES_VERSION}"
            )
            raise SchemaError(msg)
    columns = [
        np.asarray(table.column(name).to_numpy(zero_copy_only=False), np.float64)
        for name in FEATURE_COLUMNS
    ]
    return np.column_stack(columns) if columns[0].size else np.empty((0, len(FEATURE_COLUMNS)))
