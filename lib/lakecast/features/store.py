"""Writing the feature tables: whole date partitions, replaced atomically, with provenance.

A run for date D replaces exactly D's partition (Delta ``replaceWhere``), so a scheduler may
re-run any day and get the same rows, never duplicates. Every commit carries, in its
``userMetadata``, the events table version it was computed from and the features version.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
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


def latest_commit(spark: SparkSession, path: str) -> Commit:
    """The latest commit of the Delta table at ``path``.

    Raises:
        SchemaError: there is no Delta table there.
    """
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, path):
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


def replace_partitions(
    rows: DataFrame,
    path: str,
    spec: TableSpec,
    values: Iterable[date] | None,
    metadata: Mapping[str, Any],
) -> Commit:
    """Replace the partitions ``values`` of ``spec``'s table (all of it when None).

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
    writer = (
        rows.select(*spec.columns)
        .write.format("delta")
        .mode("overwrite")
        .partitionBy(column)
        .option("userMetadata", json.dumps(dict(metadata), sort_keys=True, default=str))
    )
    if values is not None:
        days = sorted(set(values))
        if not days:
            msg = f"write {spec.name!r}: no partitions to replace"
            raise SchemaError(msg)
        listed = ", ".join(f"DATE'{day.isoformat()}'" for day in days)
        writer = writer.option("replaceWhere", f"{column} IN ({listed})")
    spark = rows.sparkSession
    before = latest_commit(spark, path).version if _exists(spark, path) else None
    writer.save(path)
    after = latest_commit(spark, path)
    # Delta makes no commit when nothing is added or removed (an empty date written once more).
    return Commit(after.version, 0) if after.version == before else after


def _exists(spark: SparkSession, path: str) -> bool:
    from delta.tables import DeltaTable

    return bool(DeltaTable.isDeltaTable(spark, path))
