"""The schedule's Delta tables (``locks``, ``steps``) under ``<lake root>/_schedule``, via delta-rs.

No JVM: the lock is taken before Spark starts, so a refused run costs a second, not a session.
Writes are MERGEs on the snapshot that was read: delta-rs refuses a commit when a concurrent
one landed in what it read, and the registry's retry loop re-reads and tries again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from lakecast.errors import ScheduleError
from lakecast.registry.store import RegistryTables

_TS = pa.timestamp("us", tz="UTC")

SCHEMAS: dict[str, pa.Schema] = {
    # One row per acquisition of a named lock; the highest ``seq`` of a name is its state.
    "locks": pa.schema(
        [
            pa.field("name", pa.string(), nullable=False),
            pa.field("seq", pa.int64(), nullable=False),
            pa.field("owner", pa.string(), nullable=False),
            pa.field("host", pa.string()),
            pa.field("pid", pa.int64()),
            pa.field("acquired_at", _TS),
            pa.field("expires_at", _TS),
            pa.field("released_at", _TS),
        ]
    ),
    # One row per (job, date, step) that finished; a forced re-run updates it.
    "steps": pa.schema(
        [
            pa.field("job", pa.string(), nullable=False),
            pa.field("run_date", pa.string(), nullable=False),
            pa.field("step", pa.string(), nullable=False),
            pa.field("run_id", pa.string()),
            pa.field("finished_at", _TS),
            pa.field("seconds", pa.float64()),
            pa.field("summary", pa.string()),  # the step's JSON summary
        ]
    ),
}


class ScheduleTables:
    """The schedule's tables under ``root`` (a path or any delta-rs URI)."""

    def __init__(
        self,
        root: str,
        storage_options: Mapping[str, str] | None = None,
        *,
        max_attempts: int = 30,
    ) -> None:
        self.root = str(root).rstrip("/")
        self.storage_options = dict(storage_options or {}) or None
        # The registry's retry loop: backoff with jitter on CommitFailedError and stale reads.
        self.retry = RegistryTables(self.root, storage_options, max_attempts=max_attempts)

    def uri(self, table: str) -> str:
        return f"{self.root}/{table}"

    def open(self, table: str) -> DeltaTable | None:
        try:
            return DeltaTable(self.uri(table), storage_options=self.storage_options)
        except TableNotFoundError:
            return None

    def ensure(self, table: str) -> DeltaTable:
        """The table, created empty on first use (racing creators agree)."""
        for _ in range(self.retry.max_attempts):
            found = self.open(table)
            if found is not None:
                return found
            try:
                return DeltaTable.create(
                    self.uri(table),
                    SCHEMAS[table],
                    mode="ignore",
                    name=f"lakecast_schedule_{table}",
                    storage_options=self.storage_options,
                )
            except CommitFailedError:
                continue  # another process created it first
        msg = f"schedule: table {self.uri(table)} could not be created"
        raise ScheduleError(msg)

    def read(
        self, table: str, where: Mapping[str, str], snapshot: DeltaTable | None = None
    ) -> list[dict[str, Any]]:
        dt = snapshot if snapshot is not None else self.open(table)
        if dt is None:
            return []
        filters = [(column, "=", value) for column, value in where.items()]
        return dt.to_pyarrow_table(filters=filters or None).to_pylist()

    def row_table(self, table: str, row: dict[str, Any]) -> pa.Table:
        return pa.Table.from_pylist([row], schema=SCHEMAS[table])
