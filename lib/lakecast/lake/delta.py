"""Delta tables on Spark: whether one exists, its commits, and replacing a slice of it.

The one home of these helpers for every Spark job (events, features, scoring, the daily
report); a missing table is a :class:`SchemaError` naming the path. The delta-rs side (no
JVM) is :mod:`lakecast.lake.deltars`.

A scheduled job must be idempotent per run: writing the same slice twice replaces it. With
``replace_where`` only the rows matching the predicate are replaced (Delta checks that every
new row matches it, so a job cannot write outside its slice); without it the whole table is
overwritten. Either way it is one atomic commit, and readers never see a half-written slice.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lakecast.errors import SchemaError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from lakecast.lake.tables import TableSpec


@dataclass(frozen=True)
class Commit:
    """A table's latest commit: its version and, for a write, the rows it wrote."""

    version: int
    rows_written: int | None


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


def latest_commit(spark: SparkSession, path: str) -> Commit:
    """The latest commit of the Delta table at ``path``.

    Raises:
        SchemaError: there is no Delta table there.
    """
    from delta.tables import DeltaTable

    if not is_delta_table(spark, path):
        msg = f"read table: no Delta table at {path!r}"
        raise SchemaError(msg)
    row = DeltaTable.forPath(spark, path).history(1).collect()[0]
    written = (row["operationMetrics"] or {}).get("numOutputRows")
    return Commit(int(row["version"]), None if written is None else int(written))


def table_version(spark: SparkSession, path: str) -> int:
    """The latest version of the Delta table at ``path`` (SchemaError if there is none)."""
    return latest_commit(spark, path).version


def commit_metadata(spark: SparkSession, path: str, version: int | None = None) -> dict[str, Any]:
    """The JSON ``userMetadata`` of a commit (the latest by default); {} when there is none."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    history = DeltaTable.forPath(spark, path).history()
    if version is not None:
        history = history.filter(F.col("version") == version)
    rows = history.orderBy(F.col("version").desc()).limit(1).collect()
    text = rows[0]["userMetadata"] if rows else None
    return json.loads(text) if text else {}


def commit_history(spark: SparkSession, path: str) -> list[tuple[int, str | None]]:
    """(version, userMetadata) of every commit of the table at ``path``, newest first; [] when
    there is no table."""
    from delta.tables import DeltaTable

    if not is_delta_table(spark, path):
        return []
    rows = (
        DeltaTable.forPath(spark, path)
        .history()
        .select("version", "userMetadata")
        .orderBy("version", ascending=False)
        .collect()
    )
    return [(int(row["version"]), row["userMetadata"]) for row in rows]


def write_replacing(
    frame: DataFrame,
    path: str,
    *,
    partition_by: Sequence[str] = (),
    replace_where: str | None = None,
    metadata: Mapping[str, Any] | None = None,
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
        metadata: recorded as the commit's ``userMetadata`` (JSON).

    Returns:
        The table version this write committed.

    Raises:
        SchemaError: the existing table is partitioned differently.
    """
    spark = frame.sparkSession
    writer = frame.write.format("delta").mode("overwrite")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    if metadata is not None:
        writer = writer.option(
            "userMetadata", json.dumps(dict(metadata), sort_keys=True, default=str)
        )
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


def replace_partitions(
    rows: DataFrame,
    path: str,
    spec: TableSpec,
    values: Iterable[dt.date] | None,
    metadata: Mapping[str, Any],
) -> Commit:
    """Replace the date partitions ``values`` of ``spec``'s table (all of it when None).

    Args:
        rows: rows of exactly those partitions, with the spec's columns.
        path: the table's location (created on the first write).
        spec: the table spec; its single partition column is the one replaced.
        values: the partition values (dates) to replace; None overwrites the whole table.
        metadata: recorded as the commit's ``userMetadata`` (JSON).

    Returns:
        The new commit: the table version and the number of rows written.
    """
    if len(spec.partition_by) != 1:
        msg = f"write {spec.name!r}: expected one partition column, found {spec.partition_by}"
        raise SchemaError(msg)
    column = spec.partition_by[0]
    replace_where = None
    if values is not None:
        days = sorted(set(values))
        if not days:
            msg = f"write {spec.name!r}: no partitions to replace"
            raise SchemaError(msg)
        listed = ", ".join(f"DATE'{day.isoformat()}'" for day in days)
        replace_where = f"{column} IN ({listed})"
    spark = rows.sparkSession
    before = latest_commit(spark, path).version if is_delta_table(spark, path) else None
    write_replacing(
        rows.select(*spec.columns),
        path,
        partition_by=(column,),
        replace_where=replace_where,
        metadata=metadata,
    )
    after = latest_commit(spark, path)
    # Delta makes no commit when nothing is added or removed (an empty date written once more).
    return Commit(after.version, 0) if after.version == before else after
