"""The feature extraction run: events -> ``features`` rows and the ``entity_features`` snapshot.

For a run date D it reads the events of D and of the ``LOOKBACK_DAYS`` before (the windows
need that history), writes only D's feature rows and D's snapshot, and records the events
table version it read. Without a run date it rebuilds every date of the events table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from lakecast.errors import DataError
from lakecast.features.aggregates import entity_snapshot, price_references, totals_from_rows
from lakecast.features.spec import FEATURES_VERSION, LABEL_COLUMN, LOOKBACK_DAYS
from lakecast.features.training_set import feature_rows, valid_event_condition, valid_events
from lakecast.lake.delta import replace_partitions, table_version

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Row, SparkSession


@dataclass(frozen=True)
class ExtractSummary:
    """What a run read and wrote; the job prints it as JSON."""

    run_dates: list[str]
    events_version: int
    events_read: int
    events_invalid: int
    feature_rows: int
    labelled_rows: int
    positive_labels: int
    features_table_version: int
    snapshot_date: str
    entity_rows: int
    entity_features_table_version: int
    features_version: str = FEATURES_VERSION

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def extract_features(
    spark: SparkSession,
    *,
    events_path: str,
    features_path: str,
    entity_features_path: str,
    run_date: date | None,
) -> ExtractSummary:
    """Compute and write the features of ``run_date`` (every date when None).

    Raises:
        SchemaError: there is no events table at ``events_path``.
        DataError: a full rebuild was asked for and the events table is empty.
    """
    from pyspark.sql import functions as F

    from lakecast.lake.tables import ENTITY_FEATURES, FEATURES

    events, events_version, dates = _read_events(spark, events_path, run_date)
    valid = valid_events(events)
    # One pass for the price reference and the count of dropped rows.
    stats = (
        events.groupBy("date", "category", valid_event_condition().alias("valid"))
        .agg(F.sum("price").alias("total"), F.count(F.lit(1)).alias("n"))
        .collect()
    )
    totals = totals_from_rows(row for row in stats if row["valid"])
    metadata = {
        "job": "extract_features",
        "events_path": events_path,
        "events_version": events_version,
        "run_date": run_date.isoformat() if run_date else "all",
        "features_version": FEATURES_VERSION,
    }
    rows = feature_rows(valid, price_references(totals, dates), dates)
    features_commit = replace_partitions(
        rows, features_path, FEATURES, dates if run_date else None, metadata
    )
    labels = _label_counts(spark, features_path, dates)
    snapshot_date = dates[-1]
    entity_commit = replace_partitions(
        entity_snapshot(valid, snapshot_date, totals),
        entity_features_path,
        ENTITY_FEATURES,
        [snapshot_date],
        metadata,
    )
    return ExtractSummary(
        run_dates=[day.isoformat() for day in dates],
        events_version=events_version,
        events_read=sum(int(row["n"]) for row in stats),
        events_invalid=sum(int(row["n"]) for row in stats if not row["valid"]),
        feature_rows=int(labels["rows"]),
        labelled_rows=int(labels["labelled"]),
        positive_labels=int(labels["positives"]),
        features_table_version=features_commit.version,
        snapshot_date=snapshot_date.isoformat(),
        entity_rows=entity_commit.rows_written or 0,
        entity_features_table_version=entity_commit.version,
    )


def _read_events(
    spark: SparkSession, events_path: str, run_date: date | None
) -> tuple[DataFrame, int, list[date]]:
    """The events a run reads (``run_date`` and its look-back, or all), the table version
    read, and the dates whose features it computes.

    Raises:
        SchemaError: no events table, or one whose schema breaks the contract.
        DataError: a full rebuild of an empty events table.
    """
    from pyspark.sql import functions as F

    from lakecast.lake.tables import EVENTS

    events_version = table_version(spark, events_path)
    events = spark.read.format("delta").option("versionAsOf", events_version).load(events_path)
    EVENTS.check(_arrow_schema(events), f"extract features from {events_path}")
    if run_date is not None:
        first = run_date - timedelta(days=LOOKBACK_DAYS)
        events = events.filter(F.col("date").between(F.lit(first), F.lit(run_date)))
        return events, events_version, [run_date]
    dates = sorted(row["date"] for row in events.select("date").distinct().collect())
    if not dates:
        msg = f"extract features: events table {events_path!r} v{events_version} is empty"
        raise DataError(msg)
    return events, events_version, dates


def _label_counts(spark: SparkSession, features_path: str, dates: list[date]) -> Row:
    """Rows, labelled rows and positive labels of ``dates`` in the features just written."""
    from pyspark.sql import functions as F

    return (
        spark.read.format("delta")
        .load(features_path)
        .filter(F.col("date").isin(dates))
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.count(LABEL_COLUMN).alias("labelled"),
            F.coalesce(F.sum(LABEL_COLUMN), F.lit(0)).alias("positives"),
        )
        .collect()[0]
    )


def _arrow_schema(frame: Any) -> Any:
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(frame.schema, timezone="UTC")
