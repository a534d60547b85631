"""Moving an alias (promote, rollback) as a compare-and-set on the ``aliases`` table.

The row of an alias carries a change counter ``seq`` and the stack of versions it pointed at
before. A move MERGEs the new row only where ``seq`` is still what was read, on the snapshot
that was read: two concurrent moves cannot both commit, the loser re-reads and applies on top.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from lakecast.registry.records import AliasState
from lakecast.registry.rows import alias_from_row
from lakecast.registry.store import RegistryTables, stale, utc_now

ChooseVersion = Callable[[AliasState | None], str]


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
        current = alias_from_row(rows[0]) if rows else None
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
        }
        guard = f"t.seq = {current.seq}" if current else None
        written = tables.upsert(snapshot, "aliases", row, insert=current is None, update_when=guard)
        if not written:
            msg = f"alias {name}@{alias} moved meanwhile"
            raise stale(msg)
        return new, current, True

    return tables.with_retry(attempt, f"{action} {name}@{alias}")
