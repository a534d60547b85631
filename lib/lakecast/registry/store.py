"""The registry's Delta tables (``models``, ``versions``, ``aliases``, ``audit``), via delta-rs.

No JVM: the CLI and the streaming workers read and write these with ``deltalake``. Structured
fields are JSON strings. Every read-then-write goes through a MERGE on the snapshot that was
read, so a concurrent writer makes the commit fail (delta-rs optimistic concurrency) and the
caller re-reads and retries with backoff; appends to ``audit`` are blind and never conflict.

A change and its audit record are one commit: Delta has no transaction over two tables, so a
change is a row of the table that holds the state, carrying its own audit fields (``versions``
rows are their registrations; ``aliases`` holds one row per move, keyed by its ``seq``, the
latest being the alias's state), and the audit log is derived from those rows. ``audit`` holds
only what is nothing but a record (rollout decisions). A process killed at any moment leaves
a change with its audit record, or neither.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable, Field, write_deltalake
from deltalake.exceptions import CommitFailedError

from lakecast.errors import RegistryError
from lakecast.lake.deltars import CrashPoint, DeltaTables

_TS = pa.timestamp("us", tz="UTC")

SCHEMAS: dict[str, pa.Schema] = {
    "models": pa.schema(
        [
            pa.field("name", pa.string(), nullable=False),
            pa.field("description", pa.string()),
            pa.field("created_at", _TS),
            pa.field("created_by", pa.string()),
        ]
    ),
    "versions": pa.schema(
        [
            pa.field("name", pa.string(), nullable=False),
            pa.field("version", pa.string(), nullable=False),
            pa.field("major", pa.int64()),
            pa.field("minor", pa.int64()),
            pa.field("patch", pa.int64()),
            pa.field("flavor", pa.string()),
            pa.field("signature", pa.string()),  # JSON
            pa.field("metrics", pa.string()),  # JSON
            pa.field("lineage", pa.string()),  # JSON
            pa.field("card", pa.string()),  # JSON
            pa.field("nan_policy", pa.string()),
            pa.field("sha256", pa.string()),
            pa.field("artifact_path", pa.string()),  # relative to the registry root
            pa.field("status", pa.string()),
            pa.field("description", pa.string()),
            pa.field("created_at", _TS),
            pa.field("created_by", pa.string()),
        ]
    ),
    "aliases": pa.schema(
        [
            pa.field("name", pa.string(), nullable=False),
            pa.field("alias", pa.string(), nullable=False),
            pa.field("version", pa.string()),
            pa.field("history", pa.string()),  # JSON list, oldest first
            pa.field("seq", pa.int64()),
            pa.field("updated_at", _TS),
            pa.field("updated_by", pa.string()),
            pa.field("reason", pa.string()),
            # The move's audit fields (null in rows written before moves were rows of their own,
            # whose audit record is in ``audit``).
            pa.field("action", pa.string()),
            pa.field("previous_version", pa.string()),
        ]
    ),
    "audit": pa.schema(
        [
            pa.field("at", _TS),
            pa.field("who", pa.string()),
            pa.field("action", pa.string()),
            pa.field("name", pa.string()),
            pa.field("version", pa.string()),
            pa.field("alias", pa.string()),
            pa.field("previous_version", pa.string()),
            pa.field("seq", pa.int64()),
            pa.field("reason", pa.string()),
        ]
    ),
}
KEYS: dict[str, tuple[str, ...]] = {
    "models": ("name",),
    "versions": ("name", "version"),
    "aliases": ("name", "alias", "seq"),  # one row per move; the highest seq is the state
}


def utc_now() -> datetime:
    return datetime.now(UTC)


class RegistryTables(DeltaTables):
    """The four Delta tables under one registry root (a path or any delta-rs URI)."""

    def __init__(
        self,
        root: str,
        storage_options: Mapping[str, str] | None = None,
        max_attempts: int = 30,
        backoff_s: float = 0.02,
        crash_point: CrashPoint | None = None,
    ) -> None:
        super().__init__(
            root,
            SCHEMAS,
            label="registry",
            error=RegistryError,
            storage_options=storage_options,
            max_attempts=max_attempts,
            backoff_s=backoff_s,
            crash_point=crash_point,
        )

    def ensure(self, table: str) -> DeltaTable:
        """The table, created empty with its schema on first use (racing creators agree).

        A table written before a column was added to its schema gets the column (nullable).
        """
        return self._with_columns(table, super().ensure(table))

    def _with_columns(self, table: str, found: DeltaTable) -> DeltaTable:
        have = {f.name for f in found.schema().fields}
        missing = [f for f in SCHEMAS[table] if f.name not in have]
        if not missing:
            return found
        with contextlib.suppress(CommitFailedError):  # another process added them first
            found.alter.add_columns([Field.from_arrow(f) for f in missing])
        return self.open(table) or found

    def append(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Blind append (the audit log): never conflicts, retried only on transient failures."""
        data = pa.Table.from_pylist(rows, schema=SCHEMAS[table])
        self.ensure(table)

        def write() -> None:
            write_deltalake(
                self.uri(table), data, mode="append", storage_options=self.storage_options
            )

        self.with_retry(write, f"append to {table}")

    def upsert(
        self,
        snapshot: DeltaTable,
        table: str,
        row: dict[str, Any],
        *,
        insert: bool,
        update_when: str | None = None,
    ) -> bool:
        """MERGE one row on the table's key against ``snapshot``; True when a row was written.

        ``insert`` inserts when no row has the key; ``update_when`` (an SQL predicate on ``t``)
        updates the matching row only when it holds. A concurrent commit that touched the same
        data raises CommitFailedError, which callers retry through :meth:`with_retry`.
        """
        source = self.row_table(table, row)
        predicate = " AND ".join(f"t.{key} = s.{key}" for key in KEYS[table])
        merger = snapshot.merge(source, predicate, source_alias="s", target_alias="t")
        if update_when is not None:
            merger = merger.when_matched_update_all(predicate=update_when)
        if insert:
            merger = merger.when_not_matched_insert_all()
        self.crash("before commit")
        metrics = merger.execute()
        self.crash("after commit")
        return bool(
            metrics.get("num_target_rows_inserted", 0) + metrics.get("num_target_rows_updated", 0)
        )
