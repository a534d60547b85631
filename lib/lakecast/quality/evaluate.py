"""One quality run: settled days' predictions joined with outcomes, to the table and the topic.

:func:`evaluate_quality` reads ``events``, the batch ``predictions`` table and the archive of
the ``predictions`` topic (either may be absent), joins the predictions of the settled days
in the asked range with their outcomes, replaces those days in ``monitoring/model_quality``
and returns one ``kind=quality`` record per row, each with its version's holdout figures
from the registry. ``jobs/evaluate_quality.py`` sends them to the ``metrics`` topic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from lakecast.errors import DataError, ModelNotFoundError
from lakecast.quality.outcomes import (
    joined_outcomes,
    last_settled_day,
    realised_outcomes,
    scored_predictions,
)
from lakecast.quality.records import holdout_figures, quality_record
from lakecast.quality.table import quality_rows, write_quality

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


@dataclass(frozen=True)
class QualityRequest:
    """What ``jobs/evaluate_quality.py`` asks for."""

    events_path: str
    quality_path: str
    registry_root: str
    predictions_path: str | None = None
    archive_path: str | None = None
    first_day: date | None = None
    last_day: date | None = None
    as_of: datetime = field(default_factory=lambda: datetime.now(UTC))
    label_delay: timedelta = timedelta(hours=1)
    bins: int = 10


@dataclass(frozen=True)
class QualityRun:
    """What a run wrote: the days, the table version and the records for the topic."""

    first_day: date
    last_day: date
    table_version: int
    records: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "first_day": self.first_day.isoformat(),
            "last_day": self.last_day.isoformat(),
            "table_version": self.table_version,
            "groups": len(self.records),
            "records": self.records,
        }


def _table(spark: SparkSession, path: str | None) -> DataFrame | None:
    from lakecast.lake.delta import is_delta_table

    if path is None or not is_delta_table(spark, path):
        return None
    return spark.read.format("delta").load(path)


def settled_range(request: QualityRequest) -> tuple[date, date]:
    """The days to evaluate: the asked range cut at the last settled day.

    Raises:
        DataError: nothing in the asked range is settled yet, or the range is reversed.
    """
    settled = last_settled_day(request.as_of, request.label_delay)
    last = settled if request.last_day is None else min(request.last_day, settled)
    first = request.first_day or last
    asked_first, asked_last = request.first_day, request.last_day
    if asked_first is not None and asked_last is not None and asked_first > asked_last:
        msg = f"evaluate quality: first day {asked_first} is after last day {asked_last}"
        raise DataError(msg)
    if first > last:
        msg = (
            f"evaluate quality: no settled day from {first} on at {request.as_of.isoformat()} "
            f"(the last settled day is {settled}: a day's labels are final once it ended, plus "
            f"the label delay of {request.label_delay})"
        )
        raise DataError(msg)
    return first, last


def evaluate_quality(spark: SparkSession, request: QualityRequest) -> QualityRun:
    """Evaluate the settled days of the request (see the module docstring).

    Raises:
        DataError: no settled day in range.
        SchemaError: no predictions on either path, or a table lacks columns.
    """
    from pyspark.sql import functions as F

    from lakecast.registry import Registry

    first, last = settled_range(request)
    events = spark.read.format("delta").load(request.events_path)
    predictions = scored_predictions(
        _table(spark, request.predictions_path), _table(spark, request.archive_path)
    )
    joined = joined_outcomes(predictions, realised_outcomes(events, first, last))
    evaluated_at = datetime.now(UTC)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    commit = write_quality(
        quality_rows(joined, evaluated_at, request.bins),
        request.quality_path,
        days,
        {"job": "evaluate_quality", "first_day": first, "last_day": last},
    )
    written = (
        spark.read.format("delta")
        .option("versionAsOf", commit.version)
        .load(request.quality_path)
        .filter((F.col("day") >= F.lit(first)) & (F.col("day") <= F.lit(last)))
        .orderBy("model_name", "model_version", "variant", "day")
        .collect()
    )
    registry = Registry(request.registry_root)
    holdouts: dict[tuple[str, str], dict[str, float]] = {}
    records = []
    for row in written:
        key = (row["model_name"], row["model_version"])
        if key not in holdouts:
            try:
                version = registry.resolve(f"{key[0]}:{key[1]}")
                holdouts[key] = holdout_figures(version.metrics)
            except ModelNotFoundError:  # scored by a version this registry does not hold
                holdouts[key] = {}
        records.append(quality_record(row.asDict(), holdouts[key]))
    return QualityRun(first, last, commit.version, records)
