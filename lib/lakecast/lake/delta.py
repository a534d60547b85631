"""Small Delta write helpers on Spark: replace a slice of a partitioned table, read its version.

A scheduled job must be idempotent per run: writing the same slice twice replaces it. With
``replace_where`` only the rows matching the predicate are replaced (Delta checks that every
new row matches it, so a job cannot write outside its slice); without it the whole table is
overwritten. Either way it is one atomic commit, and readers never see a half-written slice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lakecast.errors import SchemaError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def date_range_predicate(column: str, first: dt.date, last: dt.date) -> str:
    """A SQL predicate selecting ``first <= column <= last`` (both inclusive)."""
    if last < first:
        msg = f"date range for {column!r}: last {last} is before first {first}"
        raise ValueError(msg)
    return f"`{column}` >= DATE'{first.isoformat()}' AND `{column}` <= DATE'{last.isoformat()}'"


def is_delta_table(spark: SparkSession, path: str) -> bool:
    """Whether ``path`` holds a Delta table (a ``_delta_log`` with at least one commit)."""
    from delta.tables import DeltaTable

    return bool(DeltaTable.isDeltaTable(spark, path))


def table_detail(spark: SparkSession, path: str) -> dict[str, object]:
    """``DESCRIBE DETAIL`` of a Delta table as a dict (format, partitionColumns, numFiles ...)."""
    row = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()
    if row is None:
        msg = f"describe detail: no Delta table at {path}"
        raise SchemaError(msg)
    return row.asDict()


def partition_columns(spark: SparkSession, path: str) -> list[str]:
    """The partition columns of the Delta table at ``path``."""
    return list(table_detail(spark, path)["partitionColumns"])  # type: ignore[call-overload]


def table_version(spark: SparkSession, path: str) -> int:
    """The latest committed version of the Delta table at ``path``."""
    from delta.tables import DeltaTable

    row = DeltaTable.forPath(spark, path).history(1).select("version").first()
    if row is None:
        msg = f"table version: the Delta table at {path} has no history"
        raise SchemaError(msg)
    return int(row["version"])


def write_replacing(
    frame: DataFrame,
    path: str,
    *,
    partition_by: Sequence[str] = (),
    replace_where: str | None = None,
) -> int:
    """Write ``frame`` to the Delta table at ``path``, replacing a slice or the whole table.

    Creates the table (with ``partition_by``) if there is none. An existing table must have the
    same partition columns; its schema may not change.

    Args:
        frame: the rows to write.
        path: the table's URI.
        partition_by: the table's partition columns.
        replace_where: a SQL predicate over the table (best over partition columns); only the
            rows matching it are replaced. ``None`` overwrites the whole table.

    Returns:
        The table version this write committed.

    Raises:
        SchemaError: the existing table is partitioned differently.
    """
    spark = frame.sparkSession
    writer = frame.write.format("delta").mode("overwrite")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    if is_delta_table(spark, path):
        found = partition_columns(spark, path)
        if found != list(partition_by):
            msg = (
                f"write to {path}: the table is partitioned by {found}, "
                f"the write by {list(partition_by)}"
            )
            raise SchemaError(msg)
        if replace_where is not None:
            writer = writer.option("replaceWhere", replace_where)
    writer.save(path)
    return table_version(spark, path)
