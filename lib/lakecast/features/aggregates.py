"""Entity aggregates as of a moment, in Spark SQL: the online snapshot and the price reference.

:func:`entity_snapshot` evaluates the same windows as :mod:`lakecast.features.pit` once, at a
run date's end ``T`` (events in ``[T - window, T)``), for every user, product and category. The
streaming worker reads that snapshot (``snapshot.py``) and so scores an event with the same
aggregates the batch job would have given an event at ``T``.

The category price reference is the mean price of a category over the ``LOOKBACK_DAYS`` whole
days before the events' date; it is computed from daily totals in one place, so the batch job
(per event date) and the snapshot (for the day after) get bit-identical values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from lakecast.features.pit import LONGEST_WINDOW_S, TIME_US, US_PER_S, event_flags
from lakecast.features.pit import smoothed_conversion as _smoothed_conversion
from lakecast.features.spec import FEATURES_VERSION, LOOKBACK_DAYS, WINDOWS
from lakecast.features.vocab import CATEGORIES

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

DailyTotals = Mapping[date, Mapping[str, tuple[float, int]]]
"""Per date, per category: (sum of prices, number of events)."""


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of ``day``."""
    return datetime.combine(day, time(0), tzinfo=UTC)


def daily_category_totals(events: DataFrame) -> dict[date, dict[str, tuple[float, int]]]:
    """Sum and count of valid prices per (date, category); small, so collected to the driver."""
    from pyspark.sql import functions as F

    valid = events.filter(F.col("price").isNotNull() & ~F.isnan("price") & (F.col("price") >= 0))
    rows = (
        valid.groupBy("date", "category")
        .agg(F.sum("price").alias("total"), F.count(F.lit(1)).alias("n"))
        .collect()
    )
    return totals_from_rows(rows)


def totals_from_rows(rows: Iterable[Any]) -> dict[date, dict[str, tuple[float, int]]]:
    """Daily totals from collected rows with ``date``, ``category``, ``total`` and ``n``."""
    totals: dict[date, dict[str, tuple[float, int]]] = {}
    for row in rows:
        totals.setdefault(row["date"], {})[row["category"]] = (float(row["total"]), int(row["n"]))
    return totals


def category_price_reference(totals: DailyTotals, for_date: date) -> dict[str, float]:
    """Mean price per category over the ``LOOKBACK_DAYS`` days before ``for_date``."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for offset in range(LOOKBACK_DAYS, 0, -1):  # oldest first: a fixed summation order
        for category, (total, n) in sorted(
            totals.get(for_date - timedelta(days=offset), {}).items()
        ):
            sums[category] = sums.get(category, 0.0) + total
            counts[category] = counts.get(category, 0) + n
    return {category: sums[category] / counts[category] for category in sums if counts[category]}


def price_references(totals: DailyTotals, dates: Iterable[date]) -> dict[date, dict[str, float]]:
    """The category price reference of each date in ``dates``."""
    return {day: category_price_reference(totals, day) for day in dates}


def entity_snapshot(events: DataFrame, snapshot_date: date, totals: DailyTotals) -> DataFrame:
    """User, product and category aggregates as of the end of ``snapshot_date``.

    Args:
        events: events up to ``snapshot_date`` (at least its ``LOOKBACK_DAYS`` before it too).
        snapshot_date: the run date; the aggregates cover events before its end.
        totals: daily category totals (for the price reference of the following day).

    Returns:
        Rows of the ``entity_features`` table (columns in its spec order).
    """
    from pyspark.sql import functions as F

    from lakecast.lake.tables import ENTITY_FEATURES

    as_of = day_start(snapshot_date + timedelta(days=1))
    end_us = int(as_of.timestamp()) * US_PER_S
    recent = event_flags(events).filter(
        (F.col(TIME_US) >= end_us - LONGEST_WINDOW_S * US_PER_S) & (F.col(TIME_US) < end_us)
    )

    def within(seconds: int) -> F.Column:
        return F.col(TIME_US) >= F.lit(end_us - seconds * US_PER_S)

    user_aggs = []
    for suffix, seconds in WINDOWS:
        inside = within(seconds)
        user_aggs += [
            F.count(F.when(inside, 1)).cast("double").alias(f"user_events_{suffix}"),
            F.sum(F.when(inside, F.col("_is_cart")).otherwise(0.0)).alias(f"user_carts_{suffix}"),
            F.sum(F.when(inside, F.col("_is_purchase")).otherwise(0.0)).alias(
                f"user_purchases_{suffix}"
            ),
            F.sum(F.when(inside, F.col("_spend")).otherwise(0.0)).alias(f"user_spend_{suffix}"),
        ]
    users = (
        recent.groupBy(F.col("user_id").alias("entity_id"))
        .agg(
            *user_aggs,
            F.max("ts").alias("user_last_event_ts"),
            *(
                F.sum(F.when(F.col("category") == category, 1.0).otherwise(0.0)).alias(
                    f"user_count_7d_{category}"
                )
                for category in CATEGORIES
            ),
        )
        .withColumn("entity_type", F.lit("user"))
    )
    products = (
        recent.groupBy(F.col("product_id").alias("entity_id"))
        .agg(
            F.sum("_is_view").alias("product_views_7d"),
            F.sum("_is_purchase").alias("product_purchases_7d"),
        )
        .withColumn(
            "product_conversion_7d",
            _smoothed_conversion(F.col("product_purchases_7d"), F.col("product_views_7d")),
        )
        .withColumn("entity_type", F.lit("product"))
    )
    reference = category_price_reference(totals, snapshot_date + timedelta(days=1))
    categories = events.sparkSession.createDataFrame(
        sorted(reference.items()), "entity_id string, category_mean_price_7d double"
    ).withColumn("entity_type", F.lit("category"))

    snapshot = (
        users.unionByName(products, allowMissingColumns=True)
        .unionByName(categories, allowMissingColumns=True)
        .withColumn("as_of", F.lit(as_of))
        .withColumn("features_version", F.lit(FEATURES_VERSION))
        .withColumn("snapshot_date", F.lit(snapshot_date))
    )
    return snapshot.select(
        *(F.col(field.name).cast(field.dataType) for field in ENTITY_FEATURES.spark_schema().fields)
    )
