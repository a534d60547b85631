"""Point-in-time entity features for every event, in Spark SQL.

Each event gets the user and product aggregates as they stood *strictly before* it: every
window orders by the event time in microseconds and ends at ``-1``, so an event never sees
itself, an event with the same timestamp, or anything later. This is the as-of join of the
training set with the aggregates, done by window functions over the events themselves, so a
label can never leak into its own features. No Python UDFs: it all runs in the JVM.

The same definitions, evaluated at a run date's end instead of at each event, give the online
snapshot (:mod:`lakecast.features.aggregates`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lakecast.features.spec import (
    CONVERSION_PRIOR_RATE,
    CONVERSION_PRIOR_WEIGHT,
    ENTITY_FEATURE_COLUMNS,
    RECENCY_CAP_S,
    WINDOWS,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.window import WindowSpec

US_PER_S = 1_000_000
TIME_US = "_t_us"
"""Helper column: the event time in microseconds since the epoch (dropped on the way out)."""

LONGEST_WINDOW_S = max(seconds for _, seconds in WINDOWS)


def event_flags(events: DataFrame) -> DataFrame:
    """Add the numeric helper columns every aggregate sums: time, cart, purchase, view, spend."""
    from pyspark.sql import functions as F

    is_purchase = F.col("event_type") == "purchase"
    return events.select(
        "*",
        F.unix_micros("ts").alias(TIME_US),
        (F.col("event_type") == "view").cast("double").alias("_is_view"),
        (F.col("event_type") == "cart").cast("double").alias("_is_cart"),
        is_purchase.cast("double").alias("_is_purchase"),
        F.when(is_purchase, F.col("price")).otherwise(F.lit(0.0)).alias("_spend"),
    )


def smoothed_conversion(purchases: Column, views: Column) -> Column:
    """``(purchases + rate * weight) / (views + weight)``: a new product starts at the prior."""
    from pyspark.sql import functions as F

    prior = F.lit(CONVERSION_PRIOR_RATE * CONVERSION_PRIOR_WEIGHT)
    return (purchases + prior) / (views + F.lit(CONVERSION_PRIOR_WEIGHT))


def point_in_time_features(events: DataFrame) -> DataFrame:
    """``events`` with ``ENTITY_FEATURE_COLUMNS`` (float64) computed from strictly earlier events.

    The caller passes the events of the dates it wants plus ``LOOKBACK_DAYS`` before them;
    features of the earliest days are only complete if that history is there.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    flagged = event_flags(events)

    def before(*keys: str, seconds: int) -> WindowSpec:
        return Window.partitionBy(*keys).orderBy(TIME_US).rangeBetween(-seconds * US_PER_S, -1)

    user_columns = []
    for suffix, seconds in WINDOWS:
        window = before("user_id", seconds=seconds)
        user_columns += [
            F.count(F.lit(1)).over(window).cast("double").alias(f"user_events_{suffix}"),
            F.coalesce(F.sum("_is_cart").over(window), F.lit(0.0)).alias(f"user_carts_{suffix}"),
            F.coalesce(F.sum("_is_purchase").over(window), F.lit(0.0)).alias(
                f"user_purchases_{suffix}"
            ),
            F.coalesce(F.sum("_spend").over(window), F.lit(0.0)).alias(f"user_spend_{suffix}"),
        ]
    longest = before("user_id", seconds=LONGEST_WINDOW_S)
    previous_us = F.max(TIME_US).over(longest)
    recency = F.least((F.col(TIME_US) - previous_us) / F.lit(float(US_PER_S)), F.lit(RECENCY_CAP_S))
    same_category = F.count(F.lit(1)).over(before("user_id", "category", seconds=LONGEST_WINDOW_S))
    user_events_7d = F.count(F.lit(1)).over(longest)
    category_share = F.when(user_events_7d > 0, same_category / user_events_7d).otherwise(0.0)

    product_window = before("product_id", seconds=LONGEST_WINDOW_S)
    views = F.coalesce(F.sum("_is_view").over(product_window), F.lit(0.0))
    purchases = F.coalesce(F.sum("_is_purchase").over(product_window), F.lit(0.0))

    with_features = flagged.select(
        "*",
        *user_columns,
        F.coalesce(recency, F.lit(RECENCY_CAP_S)).alias("user_recency_s"),
        category_share.cast("double").alias("user_category_share_7d"),
        views.alias("product_views_7d"),
        purchases.alias("product_purchases_7d"),
        smoothed_conversion(purchases, views).alias("product_conversion_7d"),
    )
    return with_features.select(
        *events.columns, *(F.col(name).cast("double") for name in ENTITY_FEATURE_COLUMNS)
    )
