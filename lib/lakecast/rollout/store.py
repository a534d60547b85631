"""Rollout state persisted next to the registry: the Delta tables ``rollouts`` and its history.

``rollouts`` holds one row per revision of a model's rollout: the :class:`RolloutState`
(JSON), the controller settings that drive it, who and why; the highest revision is the
current one and the rows are its history, so a change and its history record are one commit
(a process killed at any moment leaves both or neither). A change is a compare-and-set, as the
registry's aliases are moved: row ``revision + 1`` is MERGEd on the snapshot that was read, so
two writers never both commit (delta-rs refuses the commit whose read the winner's row lands
in) and the loser re-reads and applies its change on top. Workers read with delta-rs, no JVM.

``rollout_history`` is where releases before this one appended each revision after writing it;
it is only read, for the revisions of those releases.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa
from deltalake import DeltaTable

from lakecast.errors import RolloutError
from lakecast.lake.deltars import CrashPoint, DeltaTables, stale
from lakecast.registry.store import utc_now
from lakecast.rollout.strategies import RolloutState

ROLLOUTS_TABLE = "rollouts"
HISTORY_TABLE = "rollout_history"
_TS = pa.timestamp("us", tz="UTC")

ROLLOUT_SCHEMA = pa.schema(
    [
        pa.field("model", pa.string(), nullable=False),
        pa.field("revision", pa.int64(), nullable=False),
        pa.field("status", pa.string()),
        pa.field("strategy", pa.string()),
        pa.field("rollout_id", pa.string()),
        pa.field("state", pa.string()),  # RolloutState JSON
        pa.field("controller", pa.string()),  # controller settings JSON
        pa.field("updated_at", _TS),
        pa.field("updated_by", pa.string()),
        pa.field("reason", pa.string()),
    ]
)

# change(current state, current controller settings) -> new (state, settings), or None: no change.
Change = Callable[[RolloutState, dict[str, Any]], tuple[RolloutState, Mapping[str, Any]] | None]


@dataclass(frozen=True)
class RolloutRecord:
    """One revision of a model's rollout: the state, its controller settings, who and why."""

    state: RolloutState
    controller: dict[str, Any]
    updated_at: datetime
    updated_by: str
    reason: str

    @property
    def revision(self) -> int:
        return self.state.revision


def _record(row: Mapping[str, Any]) -> RolloutRecord:
    return RolloutRecord(
        state=RolloutState.from_json(row["state"]),
        controller=orjson.loads(row["controller"] or "{}"),
        updated_at=row["updated_at"],
        updated_by=row["updated_by"] or "",
        reason=row["reason"] or "",
    )


def _row(record: RolloutRecord) -> dict[str, Any]:
    state = record.state
    return {
        "model": state.model,
        "revision": state.revision,
        "status": state.status,
        "strategy": state.spec.strategy,
        "rollout_id": state.spec.id,
        "state": state.to_json(),
        "controller": orjson.dumps(record.controller, option=orjson.OPT_SORT_KEYS).decode(),
        "updated_at": record.updated_at,
        "updated_by": record.updated_by,
        "reason": record.reason,
    }


class RolloutStore:
    """The current rollout of each model and every revision it went through.

    Args:
        root: the registry root (a path or any delta-rs URI); the tables live under it.
        storage_options: passed to delta-rs.
    """

    def __init__(
        self,
        root: str,
        storage_options: Mapping[str, str] | None = None,
        *,
        max_attempts: int = 30,
        crash_point: CrashPoint | None = None,
    ) -> None:
        self.tables = DeltaTables(
            root,
            {ROLLOUTS_TABLE: ROLLOUT_SCHEMA},
            label="rollout store",
            error=RolloutError,
            table_prefix="lakecast_",
            storage_options=storage_options,
            max_attempts=max_attempts,
            crash_point=crash_point,
        )
        self.root = self.tables.root
        self.storage_options = self.tables.storage_options

    def uri(self, table: str = ROLLOUTS_TABLE) -> str:
        return self.tables.uri(table)

    def open(self, table: str = ROLLOUTS_TABLE) -> DeltaTable | None:
        """The table at its latest version, or None while nothing was written to it."""
        return self.tables.open(table)

    # ---- reading ---------------------------------------------------------------------
    def table_version(self) -> int | None:
        """The Delta version of ``rollouts`` (None before the first rollout)."""
        table = self.open()
        return None if table is None else table.version()

    def record(self, model: str, snapshot: DeltaTable | None = None) -> RolloutRecord | None:
        """The current revision of ``model``'s rollout, or None if it never had one."""
        table = snapshot if snapshot is not None else self.open()
        if table is None:
            return None
        rows = table.to_pyarrow_table(filters=[("model", "=", model)]).to_pylist()
        if not rows:
            return None
        return _record(max(rows, key=lambda r: r["revision"]))

    def current(self, model: str) -> RolloutState | None:
        """The current rollout state of ``model``, or None."""
        found = self.record(model)
        return None if found is None else found.state

    def all_current(self) -> dict[str, RolloutRecord]:
        """Model name -> its current rollout."""
        table = self.open()
        if table is None:
            return {}
        latest: dict[str, dict[str, Any]] = {}
        for row in table.to_pyarrow_table().to_pylist():
            seen = latest.get(row["model"])
            if seen is None or row["revision"] > seen["revision"]:
                latest[row["model"]] = row
        return {model: _record(row) for model, row in latest.items()}

    def history(self, model: str) -> list[RolloutRecord]:
        """Every revision ``model``'s rollouts went through, oldest first."""
        by_revision: dict[int, Mapping[str, Any]] = {}
        for table_name in (HISTORY_TABLE, ROLLOUTS_TABLE):  # the second wins a revision in both
            table = self.open(table_name)
            if table is not None:
                rows = table.to_pyarrow_table(filters=[("model", "=", model)]).to_pylist()
                by_revision |= {int(r["revision"]): r for r in rows}
        return [_record(by_revision[revision]) for revision in sorted(by_revision)]

    # ---- writing ---------------------------------------------------------------------
    def start(
        self,
        state: RolloutState,
        controller: Mapping[str, Any] | None = None,
        *,
        who: str,
        reason: str = "",
        replace_running: bool = False,
    ) -> RolloutRecord:
        """Make ``state`` the model's current rollout, as the revision after the last one.

        Raises:
            RolloutError: the model has a rollout still running (or paused) and
                ``replace_running`` is False.
        """

        def change(
            current: RolloutRecord | None,
        ) -> RolloutRecord:
            if (
                current is not None
                and current.state.status in ("running", "paused")
                and not replace_running
            ):
                running = current.state
                msg = (
                    f"start rollout {state.spec.id!r} of {state.model!r}: rollout "
                    f"{running.spec.id!r} ({running.spec.strategy}, revision {running.revision}) "
                    f"is still {running.status}; roll it back or let it finish first"
                )
                raise RolloutError(msg)
            revision = 1 if current is None else current.revision + 1
            new_state = RolloutState.model_validate(
                state.model_dump() | {"revision": revision, "updated_at": utc_now()}
            )
            return RolloutRecord(new_state, dict(controller or {}), utc_now(), who, reason)

        return self._write(state.model, change, f"start rollout of {state.model!r}")

    def update(self, model: str, change: Change, *, who: str, reason: str = "") -> RolloutRecord:
        """Apply ``change`` to the model's current rollout as a compare-and-set.

        ``change`` gets the current state and controller settings and returns the new pair,
        or None to leave everything as it is (then the current record is returned). It may
        run more than once when another writer wins a race, so it must not have side effects.

        Raises:
            RolloutError: the model has no rollout.
        """

        def apply(current: RolloutRecord | None) -> RolloutRecord | None:
            if current is None:
                msg = f"update rollout of {model!r}: there is no rollout of that model"
                raise RolloutError(msg)
            changed = change(current.state, dict(current.controller))
            if changed is None:
                return None
            new_state, controller = changed
            data = new_state.model_dump() | {
                "revision": current.revision + 1,
                "updated_at": utc_now(),
            }
            return RolloutRecord(
                RolloutState.model_validate(data), dict(controller), utc_now(), who, reason
            )

        return self._write(model, apply, f"update rollout of {model!r}")

    def _write(
        self,
        model: str,
        change: Callable[[RolloutRecord | None], RolloutRecord | None],
        what: str,
    ) -> RolloutRecord:
        def attempt() -> RolloutRecord:
            snapshot = self.tables.ensure(ROLLOUTS_TABLE)
            current = self.record(model, snapshot)
            new = change(current)
            if new is None:
                if current is None:  # pragma: no cover - change() raises instead
                    msg = f"{what}: nothing to write"
                    raise RolloutError(msg)
                return current
            if new.state.model != model:
                msg = f"{what}: the new state is for {new.state.model!r}"
                raise RolloutError(msg)
            if current is not None and new.revision != current.revision + 1:
                msg = f"{what}: revision {new.revision} does not follow {current.revision}"
                raise RolloutError(msg)
            source = self.tables.row_table(ROLLOUTS_TABLE, _row(new))
            merger = snapshot.merge(
                source,
                "t.model = s.model AND t.revision = s.revision",
                source_alias="s",
                target_alias="t",
            ).when_not_matched_insert_all()
            self.tables.crash("before commit")
            metrics = merger.execute()
            self.tables.crash("after commit")
            if not metrics.get("num_target_rows_inserted", 0):
                msg = f"{what}: revision moved meanwhile"
                raise stale(msg)
            return new

        return self.tables.with_retry(attempt, what)
