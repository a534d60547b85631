"""Writing a generator run into the ``events`` Delta table, idempotently, and summarising it."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from lakecast.data.clickstream import ClickstreamRun
from lakecast.lake.delta import date_range_predicate, write_replacing
from lakecast.lake.tables import EVENTS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def run_predicate(run: ClickstreamRun) -> str:
    """The slice of ``events`` a run owns: its dates."""
    return date_range_predicate("date", run.start_date, run.end_date)


def write_events(frame: DataFrame, path: str, run: ClickstreamRun) -> int:
    """Replace the run's dates of the ``events`` table at ``path`` with ``frame``.

    Other dates are left alone, so daily runs accumulate and a rerun replaces, never duplicates.

    Returns:
        The Delta table version of the commit.

    Raises:
        SchemaError: ``frame`` does not have the ``events`` schema, or the table at ``path``
            is partitioned differently.
    """
    from pyspark.sql.pandas.types import to_arrow_schema

    EVENTS.check(to_arrow_schema(frame.schema, timezone="UTC"), f"write_events to {path}")
    return write_replacing(
        frame, path, partition_by=EVENTS.partition_by, replace_where=run_predicate(run)
    )


def rows_per_day(spark: SparkSession, path: str, run: ClickstreamRun) -> dict[dt.date, int]:
    """Rows of each of the run's dates in the table (dates without rows count 0)."""
    counts = {
        row["date"]: int(row["count"])
        for row in spark.read.format("delta")
        .load(path)
        .where(run_predicate(run))
        .groupBy("date")
        .count()
        .collect()
    }
    dates = [run.start_date + dt.timedelta(days=offset) for offset in range(run.days)]
    return {day: counts.get(day, 0) for day in dates}
