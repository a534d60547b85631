"""Promotion approval: a person signs off before a rollout's last step to 100 % of traffic.

A model named in ``rollout.approval_required`` (conf/lakecast.yaml) starts its rollouts with
``approval_required`` in the controller settings stored with the rollout. The controller then
holds the canary at its last step below 100 % once that step's analysis passes (it records
``awaiting_approval`` and keeps analysing, so a candidate that degrades meanwhile is still
rolled back) until :func:`approve_rollout` stores an :class:`Approval` in those settings; its
next tick promotes. The approval is a compare-and-set revision of the rollout, and a
``rollout_approved`` row in the registry's audit log whose ``who`` is the approver.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lakecast.errors import RolloutError
from lakecast.registry import Registry
from lakecast.rollout.journal import RolloutJournal
from lakecast.rollout.store import RolloutRecord, RolloutStore
from lakecast.rollout.strategies import RolloutState


class Approval(BaseModel):
    """Who let a rollout go to 100 %, when and why; stored with the controller settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rollout_id: str
    by: str = Field(min_length=1)
    at: datetime
    reason: str = ""


def find_rollout(store: RolloutStore, registry: Registry, target: str) -> RolloutRecord:
    """The current rollout of the model ``target``, else the one whose id is ``target``.

    Raises:
        RolloutError: no model has a rollout of that name or id, or several share the id.
        ModelNotFoundError: ``target`` is neither a rollout id nor a registered model.
    """
    record = store.record(target)
    if record is not None:
        return record
    matches = [r for r in store.all_current().values() if r.state.spec.id == target]
    if len(matches) == 1:
        return matches[0]
    if matches:
        models = sorted(r.state.model for r in matches)
        msg = f"approve {target!r}: rollouts of {models} share that id; name the model"
        raise RolloutError(msg)
    registry.resolve(target)  # an unknown name is named as such
    msg = f"approve {target!r}: the model has no rollout"
    raise RolloutError(msg)


def approve_rollout(
    registry: Registry,
    store: RolloutStore,
    target: str,
    journal: RolloutJournal,
    *,
    by: str,
    reason: str = "",
) -> RolloutRecord:
    """Record ``by``'s approval of the running rollout of ``target`` (a model or rollout id).

    Raises:
        RolloutError: no such rollout, it is not running, it needs no approval, it was
            approved already, or ``by`` is empty.
    """
    if not by.strip():
        msg = f"approve {target!r}: say who approves (--by NAME)"
        raise RolloutError(msg)
    found = find_rollout(store, registry, target)
    rollout_id, model = found.state.spec.id, found.state.model
    where = f"approve rollout {rollout_id!r} of {model!r}"
    approval = Approval(rollout_id=rollout_id, by=by, at=datetime.now(UTC), reason=reason)
    refusal: list[str] = []

    def change(
        state: RolloutState, controller: dict[str, Any]
    ) -> tuple[RolloutState, dict[str, Any]] | None:
        refusal.clear()
        if state.spec.id != rollout_id or state.status not in ("running", "paused"):
            refusal.append(f"{where}: it is {state.status} (rollout {state.spec.id!r} now)")
            return None
        if not controller.get("approval_required"):
            refusal.append(
                f"{where}: it needs no approval (rollout.approval_required does not name "
                f"{model!r}, and its rollout file did not ask for one)"
            )
            return None
        given = controller.get("approval")
        if given:
            earlier = Approval.model_validate(given)
            refusal.append(
                f"{where}: approved already by {earlier.by} at {earlier.at:%Y-%m-%d %H:%M:%S} UTC"
            )
            return None
        return state.next_revision(), controller | {"approval": approval.model_dump(mode="json")}

    why = f"approved by {by}" + (f": {reason}" if reason else "")
    written = store.update(model, change, who=by, reason=why)
    if refusal:
        raise RolloutError(refusal[0])
    journal.record(
        "approved",
        written.state,
        reasons=[why],
        details={"approval": approval.model_dump(mode="json")},
        who=by,
    )
    return written


def approval_status(model: str, controller: dict[str, Any]) -> str | None:
    """One line on a rollout's approval for ``deploy status``; None when it needs none."""
    if not controller.get("approval_required"):
        return None
    given = controller.get("approval")
    if given:
        approval = Approval.model_validate(given)
        note = f" ({approval.reason})" if approval.reason else ""
        return f"approved by {approval.by} at {approval.at:%Y-%m-%d %H:%M:%S} UTC{note}"
    since = controller.get("awaiting_approval_since")
    if since:
        return (
            f"HELD: awaiting approval since {since} before the step to 100 % "
            f"(lakecast deploy approve {model} --by NAME)"
        )
    return "needs an approval before the step to 100 % (not reached yet)"
