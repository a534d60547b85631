"""The schedule's Delta tables (``locks``, ``steps``) under ``<lake root>/_schedule``, via delta-rs.

No JVM: the lock is taken before Spark starts, so a refused run costs a second, not a session.
Writes are MERGEs on the snapshot that was read: delta-rs refuses a commit when a concurrent
one landed in what it read, and the retry loop (:mod:`lakecast.lake.deltars`) re-reads and
tries again.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

from lakecast.errors import ScheduleError
from lakecast.lake.deltars import DeltaTables

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


class ScheduleTables(DeltaTables):
    """The schedule's tables under ``root`` (a path or any delta-rs URI)."""

    def __init__(
        self,
        root: str,
        storage_options: Mapping[str, str] | None = None,
        *,
        max_attempts: int = 30,
    ) -> None:
        super().__init__(
            root,
            SCHEMAS,
            label="schedule",
            error=ScheduleError,
            storage_options=storage_options,
            max_attempts=max_attempts,
        )
