"""Delta tables through delta-rs (no JVM): open, create once, watch, commit with retry.

The registry, the rollout store and the schedule each keep small Delta tables under a root (a
path or any delta-rs URI) that processes without Spark read and write: the CLI, the streaming
workers, a daily run before its Spark session starts. :class:`DeltaTables` is what they share;
:class:`WatchedTable` is the one way to poll a table's version cheaply.

Every read-then-write is a MERGE on the snapshot that was read, so a concurrent writer makes
the commit fail (delta-rs optimistic concurrency); :meth:`DeltaTables.with_retry` re-runs the
attempt, which re-reads, with backoff and jitter.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from lakecast.errors import LakecastError, VersionConflictError

T = TypeVar("T")

# Called with the name of the point a write reached ("before commit", "after commit"), so a test
# can kill the process exactly there; None in production.
CrashPoint = Callable[[str], None]


def open_table(uri: str, storage_options: Mapping[str, str] | None = None) -> DeltaTable | None:
    """The table at its latest version, or None while nothing was ever written to it."""
    try:
        return DeltaTable(uri, storage_options=dict(storage_options) if storage_options else None)
    except TableNotFoundError:
        return None


class WatchedTable:
    """One table kept open and brought up to date on each :meth:`poll`.

    Cheap enough to poll: only the log entries written since the last call are read (about
    0.5 ms on a local disk, against 2 ms to open it and 3 more to read it). Not thread-safe:
    one caller at a time.
    """

    def __init__(self, uri: str, storage_options: Mapping[str, str] | None = None) -> None:
        self.uri = uri
        self.storage_options = storage_options
        self._table: DeltaTable | None = None

    def poll(self) -> DeltaTable | None:
        """The table at its latest version (None while it does not exist)."""
        if self._table is None:
            self._table = open_table(self.uri, self.storage_options)
        else:
            self._table.update_incremental()
        return self._table

    def version(self) -> int | None:
        """The table's current Delta version (None while it does not exist)."""
        table = self.poll()
        return None if table is None else table.version()


class DeltaTables:
    """Named tables of known schemas under one root.

    Args:
        root: a path or any delta-rs URI.
        schemas: each table's schema, by name.
        label: names the store in errors ("registry", "schedule").
        table_prefix: a created table's Delta name is this and its own
            (default ``lakecast_<label>_``).
        error: the error a table that cannot be created raises.
        storage_options: passed to delta-rs.
        max_attempts: tries of a write (and of a creation) before giving up.
        backoff_s: the first pause after a conflict; doubled each time up to 1 s.
        crash_point: the test hook (:data:`CrashPoint`).
    """

    def __init__(
        self,
        root: str,
        schemas: Mapping[str, pa.Schema],
        *,
        label: str,
        error: type[LakecastError],
        table_prefix: str | None = None,
        storage_options: Mapping[str, str] | None = None,
        max_attempts: int = 30,
        backoff_s: float = 0.02,
        crash_point: CrashPoint | None = None,
    ) -> None:
        self.root = str(root).rstrip("/")
        self.schemas = dict(schemas)
        self.label = label
        self.table_prefix = f"lakecast_{label}_" if table_prefix is None else table_prefix
        self.error = error
        self.storage_options = dict(storage_options or {}) or None
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.crash_point = crash_point
        self.conflicts = 0  # commits retried after a concurrent writer won; for metrics and tests
        self._watched: dict[str, WatchedTable] = {}

    def uri(self, table: str) -> str:
        return f"{self.root}/{table}"

    def open(self, table: str) -> DeltaTable | None:
        """The table at its latest version, or None while nothing was ever written to it."""
        return open_table(self.uri(table), self.storage_options)

    def watch(self, table: str) -> WatchedTable:
        """The table kept open for polling (one per name: see :class:`WatchedTable`)."""
        watched = self._watched.get(table)
        if watched is None:
            watched = self._watched[table] = WatchedTable(self.uri(table), self.storage_options)
        return watched

    def latest_version(self, table: str) -> int | None:
        """The table's current Delta version (None while it does not exist); cheap to poll."""
        return self.watch(table).version()

    def ensure(self, table: str) -> DeltaTable:
        """The table, created empty with its schema on first use (racing creators agree).

        Raises:
            LakecastError: (``error``) it could not be created in ``max_attempts`` tries.
        """
        for _ in range(self.max_attempts):
            found = self.open(table)
            if found is not None:
                return found
            try:
                return DeltaTable.create(
                    self.uri(table),
                    self.schemas[table],
                    mode="ignore",
                    name=f"{self.table_prefix}{table}",
                    storage_options=self.storage_options,
                )
            except CommitFailedError:
                continue  # another process created it first
        msg = f"{self.label}: table {self.uri(table)} could not be created"
        raise self.error(msg)

    def read(
        self, table: str, where: Mapping[str, str] | None = None, snapshot: DeltaTable | None = None
    ) -> list[dict[str, Any]]:
        """Rows (as dicts) of a table, optionally with equality filters, from ``snapshot``."""
        dt = snapshot if snapshot is not None else self.open(table)
        if dt is None:
            return []
        filters = [(column, "=", value) for column, value in (where or {}).items()]
        data: list[dict[str, Any]] = dt.to_pyarrow_table(filters=filters or None).to_pylist()
        return data

    def row_table(self, table: str, row: dict[str, Any]) -> pa.Table:
        """One row as an Arrow table of ``table``'s schema."""
        return pa.Table.from_pylist([row], schema=self.schemas[table])

    def crash(self, point: str) -> None:
        """Give the test hook its chance to kill the process at ``point``."""
        if self.crash_point is not None:
            self.crash_point(point)

    def with_retry(self, attempt: Callable[[], T], what: str) -> T:
        """Run ``attempt`` until it commits; exponential backoff with jitter between conflicts.

        ``attempt`` re-reads what it writes on: it raises :func:`stale` when what it read no
        longer holds, and delta-rs raises ``CommitFailedError`` when a concurrent commit won.

        Raises:
            VersionConflictError: still conflicting after ``max_attempts`` tries (retriable).
        """
        delay = self.backoff_s
        number = 1
        while True:
            try:
                return attempt()
            except (CommitFailedError, _Stale) as exc:
                self.conflicts += 1
                if number >= self.max_attempts:
                    msg = (
                        f"{self.label} {self.root}: {what} still conflicts after {number} "
                        f"tries: {exc}"
                    )
                    raise VersionConflictError(msg) from exc
            time.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter, not crypto
            delay = min(delay * 2, 1.0)
            number += 1


class _Stale(Exception):  # an internal signal, never escapes with_retry
    """The snapshot that was read no longer holds: re-read and try again."""


def stale(what: str) -> _Stale:
    return _Stale(what)
