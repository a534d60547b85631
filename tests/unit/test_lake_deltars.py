"""The delta-rs tables the registry, the rollout store and the schedule share."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from lakecast.errors import ScheduleError, VersionConflictError
from lakecast.lake.deltars import DeltaTables, WatchedTable, stale

SCHEMA = pa.schema([pa.field("name", pa.string(), nullable=False), pa.field("n", pa.int64())])


def tables(root: Path, **options: object) -> DeltaTables:
    return DeltaTables(
        str(root),
        {"t": SCHEMA},
        label="schedule",
        error=ScheduleError,
        **options,  # type: ignore[arg-type]
    )


def test_a_watched_table_follows_the_versions_written_after_it_was_opened(tmp_path: Path) -> None:
    store = tables(tmp_path)
    watched = WatchedTable(store.uri("t"))
    assert watched.version() is None  # nothing written yet
    store.ensure("t")
    assert watched.version() == 0
    write_deltalake(store.uri("t"), store.row_table("t", {"name": "a", "n": 1}), mode="append")
    assert watched.version() == 1
    assert store.latest_version("t") == 1
    assert store.read("t", {"name": "a"}) == [{"name": "a", "n": 1}]
    assert store.open("t").metadata().name == "lakecast_schedule_t"  # type: ignore[union-attr]


def test_a_write_that_keeps_conflicting_is_a_version_conflict_naming_the_store(
    tmp_path: Path,
) -> None:
    store = tables(tmp_path, max_attempts=3, backoff_s=0.001)

    def attempt() -> None:
        raise stale("moved")

    with pytest.raises(VersionConflictError, match=r"schedule .*: write t still conflicts after 3"):
        store.with_retry(attempt, "write t")
    assert store.conflicts == 3
