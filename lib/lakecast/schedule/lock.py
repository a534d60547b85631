"""A named lock in the lake: two schedulers on two machines cannot both run the same date.

The lock's state is the newest row (highest ``seq``) of its name in the ``locks`` table. To
take it, a process reads that row and, when it is released or its lease ran out, MERGEs row
``seq + 1`` on the snapshot it read. Two takers racing both write ``seq + 1``: delta-rs commits
one and refuses the other (its read saw neither row, the winner's lands in it), which re-reads,
finds the lock held and is refused with the holder's name. The Delta commit is the arbiter,
so this works wherever the lake does (a local disk, or an object store with a log store that
makes commits atomic). A holder that dies keeps the lock until its lease ends.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from lakecast.errors import RunLockedError, ScheduleError
from lakecast.lake.deltars import stale
from lakecast.registry.store import utc_now
from lakecast.schedule.tables import ScheduleTables

LOCKS = "locks"
DEFAULT_LEASE = timedelta(hours=6)  # longer than any day's batch work measured here (minutes)


@dataclass(frozen=True)
class Lease:
    """A lock this process holds."""

    name: str
    seq: int
    owner: str
    expires_at: datetime


def _holder(row: dict[str, Any]) -> str:
    since = row["acquired_at"].isoformat(timespec="seconds")
    until = row["expires_at"].isoformat(timespec="seconds")
    return (
        f"{row['owner']} (host {row['host']}, pid {row['pid']}) since {since}, lease until {until}"
    )


def current_holder(tables: ScheduleTables, name: str) -> dict[str, Any] | None:
    """The row of whoever holds ``name`` now, or None when it is free."""
    rows = tables.read(LOCKS, {"name": name})
    return _held(rows)


def _held(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not rows:
        return None
    newest = max(rows, key=lambda row: row["seq"])
    if newest["released_at"] is None and newest["expires_at"] > utc_now():
        return newest
    return None


def acquire(tables: ScheduleTables, name: str, *, lease: timedelta = DEFAULT_LEASE) -> Lease:
    """Take the lock ``name`` for ``lease``.

    Raises:
        RunLockedError: another process holds it (the message names it and its lease).
    """
    if lease <= timedelta(0):
        msg = f"lock {name!r}: the lease must be positive, got {lease}"
        raise ScheduleError(msg)
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"

    def attempt() -> Lease:
        snapshot = tables.ensure(LOCKS)
        rows = tables.read(LOCKS, {"name": name}, snapshot)
        held = _held(rows)
        if held is not None:
            msg = f"{name} is already running: locked by {_holder(held)}; not starting a second run"
            raise RunLockedError(msg)
        seq = max((row["seq"] for row in rows), default=0) + 1
        now = utc_now()
        expires_at = now + lease
        row: dict[str, Any] = {
            "name": name,
            "seq": seq,
            "owner": owner,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "acquired_at": now,
            "expires_at": expires_at,
            "released_at": None,
        }
        metrics = (
            snapshot.merge(
                tables.row_table(LOCKS, row),
                "t.name = s.name AND t.seq = s.seq",
                source_alias="s",
                target_alias="t",
            )
            .when_not_matched_insert_all()
            .execute()
        )
        if not metrics.get("num_target_rows_inserted", 0):
            msg = f"lock {name!r}: seq {seq} taken meanwhile"
            raise stale(msg)
        return Lease(name=name, seq=seq, owner=owner, expires_at=expires_at)

    return tables.with_retry(attempt, f"take lock {name!r}")


def release(tables: ScheduleTables, lease: Lease) -> None:
    """Give the lock back (a lock whose lease ran out and was taken since is left alone)."""

    def attempt() -> None:
        snapshot = tables.ensure(LOCKS)
        row = {
            "name": lease.name,
            "seq": lease.seq,
            "owner": lease.owner,
            "host": None,
            "pid": None,
            "acquired_at": None,
            "expires_at": None,
            "released_at": utc_now(),
        }
        (
            snapshot.merge(
                tables.row_table(LOCKS, row),
                "t.name = s.name AND t.seq = s.seq AND t.owner = s.owner",
                source_alias="s",
                target_alias="t",
            )
            .when_matched_update(
                updates={"released_at": "s.released_at"}, predicate="t.released_at IS NULL"
            )
            .execute()
        )

    tables.with_retry(attempt, f"release lock {lease.name!r}")


@contextmanager
def holding(
    tables: ScheduleTables, name: str, *, lease: timedelta = DEFAULT_LEASE
) -> Iterator[Lease]:
    """Hold the lock ``name`` for the ``with`` block; released however the block ends."""
    taken = acquire(tables, name, lease=lease)
    try:
        yield taken
    finally:
        release(tables, taken)
