"""Moving an alias (promote, rollback) as a compare-and-set on the ``aliases`` table.

Every move is a row of its own, keyed by (name, alias, ``seq``), carrying the stack of versions
the alias pointed at before and the move's audit fields; the row with the highest ``seq`` is
where the alias points. A move MERGEs row ``seq + 1`` on the snapshot that was read: two
concurrent moves cannot both commit (the winner's row lands where the loser read, delta-rs
refuses the loser's commit), the loser re-reads and applies on top. The move and its audit
record being one row, one commit holds both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson

from lakecast.lake.deltars import stale
from lakecast.registry.records import AliasState
from lakecast.registry.rows import alias_from_row
from lakecast.registry.store import RegistryTables, utc_now

ChooseVersion = Callable[[AliasState | None], str]


def latest_moves(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Alias -> the row of its latest move, among ``aliases`` rows of one model."""
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        seen = latest.get(row["alias"])
        if seen is None or int(row["seq"]) > int(seen["seq"]):
            latest[row["alias"]] = row
    return latest


def move_alias(
    tables: RegistryTables,
    name: str,
    alias: str,
    action: str,
    who: str,
    why: str,
    choose: ChooseVersion,
) -> tuple[AliasState, AliasState | None, bool]:
    """Move ``name@alias`` to ``choose(current)``; (new state, old state, whether it changed)."""

    def attempt() -> tuple[AliasState, AliasState | None, bool]:
        snapshot = tables.ensure("aliases")
        rows = tables.read("aliases", {"name": name, "alias": alias}, snapshot)
        latest = latest_moves(rows).get(alias)
        current = alias_from_row(latest) if latest is not None else None
        version = choose(current)
        if current is not None and current.version == version and action == "promote":
            return current, current, False  # already there: nothing to record
        if current is None:
            history: tuple[str, ...] = ()
        elif action == "rollback":
            history = current.history[:-1]
        else:
            history = (*current.history, current.version)
        seq = (current.seq if current else 0) + 1
        new = AliasState(name, alias, version, history, seq, utc_now(), who, why)
        row = {
            "name": name,
            "alias": alias,
            "version": version,
            "history": orjson.dumps(list(history)).decode(),
            "seq": seq,
            "updated_at": new.updated_at,
            "updated_by": who,
            "reason": why,
            "action": action,
            "previous_version": current.version if current else None,
        }
        if not tables.upsert(snapshot, "aliases", row, insert=True):
            msg = f"alias {name}@{alias} moved meanwhile"
            raise stale(msg)
        return new, current, True

    return tables.with_retry(attempt, f"{action} {name}@{alias}")
