"""Starting and rolling back rollouts: the checks before a version takes traffic.

:func:`start_rollout` resolves the candidate (an unknown version is refused by name), runs
the pre-rollout gates against the live champion (a failed gate refuses the rollout, naming
the gate and by how much), builds the strategy's :class:`RolloutState` and stores it; the
workers pick it up at their next poll. A blue-green deploy switches at once (the champion
alias moves with it). :func:`rollback_rollout` sends all traffic back to the baseline at
once and, if the rollout had moved the champion alias, moves it back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml

from lakecast.errors import ModelNotFoundError, RegistryError, RolloutError
from lakecast.registry import ModelVersion, Registry
from lakecast.rollout.controller import ControllerSettings
from lakecast.rollout.gates import GateConfig, GateReport, VersionFacts, run_gates
from lakecast.rollout.journal import RolloutJournal
from lakecast.rollout.store import RolloutRecord, RolloutStore
from lakecast.rollout.strategies import (
    Canary,
    RolloutState,
    parse_model_ref,
    parse_rollout_spec,
)

StrategyName = Literal["blue_green", "canary", "ab", "shadow", "multi_model", "bandit"]
STRATEGIES: tuple[StrategyName, ...] = (
    "blue_green",
    "canary",
    "ab",
    "shadow",
    "multi_model",
    "bandit",
)
_ALIASES = {"a-b": "ab", "a_b": "ab", "bluegreen": "blue_green"}
# In a rollout file, these stand for the live champion and the version being deployed.
PLACEHOLDERS = ("champion", "candidate")


def parse_strategy(text: str) -> StrategyName:
    """A strategy name: blue-green, canary, ab, shadow, multi-model or bandit (- or _)."""
    name = text.strip().lower()
    name = _ALIASES.get(name, name).replace("-", "_")
    for known in STRATEGIES:
        if name == known:
            return known
    msg = f"unknown rollout strategy {text!r}; known are {', '.join(STRATEGIES)}"
    raise RolloutError(msg)


def load_rollout_file(path: str | Path) -> dict[str, Any]:
    """A rollout file (YAML or JSON): spec fields, plus optional ``controller`` and ``gates``.

    Raises:
        RolloutError: the file is missing or does not hold a mapping.
    """
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        msg = f"rollout file {file}: cannot read it ({exc})"
        raise RolloutError(msg) from exc
    try:
        data = orjson.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        msg = f"rollout file {file}: not valid {file.suffix.lstrip('.') or 'YAML'}: {exc}"
        raise RolloutError(msg) from exc
    if not isinstance(data, dict):
        msg = f"rollout file {file}: expected a mapping at the top, found {type(data).__name__}"
        raise RolloutError(msg)
    return data


@dataclass(frozen=True)
class DeployRequest:
    """What ``lakecast deploy NAME VERSION --strategy S ...`` asks for.

    ``plan`` holds a rollout file's contents: spec fields (``rules``, ``arms``, ``split``,
    ...) where ``champion`` / ``candidate`` may stand for the two versions, and optional
    ``controller`` and ``gates`` sections. Explicit arguments win over the plan.
    """

    name: str
    version: str
    strategy: StrategyName | None = None
    steps: tuple[float, ...] | None = None
    rollout_id: str | None = None
    split: float | None = None
    shadow_percent: float | None = None
    plan: Mapping[str, Any] = field(default_factory=dict)
    controller: Mapping[str, Any] = field(default_factory=dict)
    gates: GateConfig | None = None
    champion_alias: str = "champion"
    replace_running: bool = False
    reason: str = ""
    # The model is named in rollout.approval_required: its step to 100 % waits for
    # `lakecast deploy approve` (a rollout file may ask for it too, never waive it).
    approval_required: bool = False


def _resolve(registry: Registry, ref: str, what: str) -> ModelVersion:
    try:
        return registry.resolve(ref)
    except ModelNotFoundError as exc:
        msg = f"deploy refused: {what} {ref}: {exc}"
        raise RolloutError(msg) from exc


def _champion(registry: Registry, name: str, alias: str) -> ModelVersion:
    try:
        return registry.resolve(f"{name}@{alias}")
    except ModelNotFoundError as exc:
        msg = (
            f"deploy refused: model {name!r} has no live version ({exc}); make a first one "
            f"live with `lakecast models promote {name} VERSION --alias {alias}`"
        )
        raise RolloutError(msg) from exc


def _substitute(value: Any, refs: Mapping[str, str], key: str | None = None) -> Any:
    """Replace the placeholders under ``model`` keys and in ``shadows`` lists."""
    if isinstance(value, Mapping):
        return {k: _substitute(v, refs, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_substitute(v, refs, key) for v in value]
    if isinstance(value, str) and key in ("model", "shadows") and value in refs:
        return refs[value]
    return value


def build_state(request: DeployRequest, champion: str, candidate: str) -> RolloutState:
    """The rollout state the request describes, before it is stored (revision 0).

    Raises:
        RolloutError: the request does not make a valid rollout (the message says why).
    """
    plan = {k: v for k, v in request.plan.items() if k not in ("controller", "gates")}
    strategy = request.strategy or parse_strategy(str(plan.get("strategy", "canary")))
    refs = {"champion": champion, "candidate": candidate}
    version = parse_model_ref(candidate)[1]
    spec: dict[str, Any] = {"strategy": strategy, "id": f"{strategy}-{version}".replace("_", "-")}
    if strategy == "blue_green":
        spec |= {"blue": champion, "green": candidate, "active": "green"}
    elif strategy == "canary":
        spec |= {"champion": champion, "candidate": candidate}
    elif strategy == "ab":
        share = plan.get("split", 50.0) if request.split is None else request.split
        if not isinstance(share, list):  # a full split in the file is taken as it is
            plan.pop("split", None)
            spec["split"] = [
                {"name": "champion", "model": champion, "weight": 100.0 - float(share)},
                {"name": "candidate", "model": candidate, "weight": float(share)},
            ]
    elif strategy == "shadow":
        spec |= {"champion": champion, "shadows": [candidate]}
    elif strategy == "multi_model":
        spec["default"] = {"name": "champion", "model": champion}
    elif strategy == "bandit":
        spec["arms"] = [
            {"name": "champion", "model": champion},
            {"name": "candidate", "model": candidate},
        ]
    plan.pop("strategy", None)
    spec |= _substitute(plan, refs)
    if request.steps is not None:
        spec["steps"] = list(request.steps)
    if request.rollout_id is not None:
        spec["id"] = request.rollout_id
    if request.shadow_percent is not None:
        spec["shadow_percent"] = request.shadow_percent
    if strategy == "multi_model" and "rules" not in spec:
        msg = "deploy refused: a multi-model rollout needs `rules` (give them with --rules FILE)"
        raise RolloutError(msg)
    try:
        parsed = parse_rollout_spec(spec)
        if strategy == "blue_green":
            return RolloutState(model=request.name, spec=parsed, status="promoted", winner="green")
        return RolloutState(model=request.name, spec=parsed)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        msg = f"deploy refused: the {strategy} rollout of {candidate} is not valid: {exc}"
        raise RolloutError(msg) from exc


def _check_approvable(state: RolloutState, needs_approval: bool) -> None:
    """A rollout that gives the candidate 100 % at once leaves nothing to hold for approval."""
    if not needs_approval:
        return
    spec = state.spec
    at_once = spec.strategy == "blue_green" or (isinstance(spec, Canary) and spec.percent >= 100.0)
    if at_once:
        msg = (
            f"deploy refused: model {state.model!r} needs an approval before its candidate "
            f"takes 100 % of traffic (rollout.approval_required), and a {spec.strategy} "
            f"rollout starting at 100 % leaves nothing to hold: use a canary with steps "
            "below 100 %, e.g. --strategy canary --steps 5,25,50,100"
        )
        raise RolloutError(msg)


def check_gates(
    candidate: ModelVersion, champion: ModelVersion, config: GateConfig | None = None
) -> GateReport:
    """The pre-rollout gates of ``candidate`` against the live ``champion``."""
    return run_gates(
        VersionFacts.from_mapping(candidate), VersionFacts.from_mapping(champion), config
    )


def start_rollout(
    registry: Registry,
    store: RolloutStore,
    request: DeployRequest,
    journal: RolloutJournal,
    *,
    who: str,
) -> tuple[RolloutRecord, GateReport]:
    """Check, then start the rollout ``request`` describes.

    Raises:
        RolloutError: the version is unknown, is already live, a gate failed (naming the
            gate and by how much), the rollout is invalid, or another one is still running.
    """
    name = request.name
    candidate = _resolve(registry, f"{name}:{request.version}", "version")
    champion = _champion(registry, name, request.champion_alias)
    if candidate.version == champion.version:
        msg = f"deploy refused: {candidate.ref} is already {name}@{request.champion_alias}"
        raise RolloutError(msg)
    state = build_state(request, champion.ref, candidate.ref)
    refs = {v.model for v in state.spec.variants()} | set(state.spec.shadows)
    for ref in sorted(refs - {candidate.ref, champion.ref}):
        _resolve(registry, ref, "model")
    gates = request.gates or GateConfig.configured(request.plan.get("gates"))
    report = check_gates(candidate, champion, gates)
    if not report.passed:
        journal.record(
            "refused",
            state,
            reasons=[f"{r.gate}: {r.message}" for r in report.failed],
            details={"gates": [r.model_dump(mode="json") for r in report.results]},
            who=who,
        )
        report.raise_if_failed()
    asked = {**(request.plan.get("controller") or {}), **request.controller}
    forged = sorted(set(asked) & {"approval", "awaiting_approval_since"})
    if forged:
        msg = f"deploy refused: {forged} are recorded by `lakecast deploy approve` and the "
        msg += "controller, not given with a rollout"
        raise RolloutError(msg)
    needs_approval = request.approval_required or bool(asked.get("approval_required"))
    _check_approvable(state, needs_approval)
    settings = ControllerSettings.model_validate(
        asked | {"champion_alias": request.champion_alias, "approval_required": needs_approval}
    )
    record = store.start(
        state,
        settings.model_dump(mode="json"),
        who=who,
        reason=request.reason or f"deploy {candidate.ref} ({state.spec.strategy})",
        replace_running=request.replace_running,
    )
    if state.spec.strategy == "blue_green":
        registry.promote(
            name,
            candidate.version,
            request.champion_alias,
            who=who,
            why=f"blue-green switch {record.state.spec.id!r}",
        )
    journal.record(
        "started",
        record.state,
        reasons=[r.message for r in report.results],
        details={"gates": [r.model_dump(mode="json") for r in report.results]},
        who=who,
    )
    return record, report


def rollback_rollout(
    registry: Registry,
    store: RolloutStore,
    name: str,
    journal: RolloutJournal,
    *,
    who: str,
    reason: str = "",
) -> RolloutRecord:
    """Send all of ``name``'s traffic back to its rollout's baseline at once.

    If the rollout had promoted its winner (a blue-green switch, a finished canary) and the
    champion alias still points at it, the alias moves back too.

    Raises:
        RolloutError: the model has no rollout, or it is rolled back already.
    """
    before = store.record(name)
    if before is None:
        msg = f"rollback {name!r}: the model has no rollout"
        raise RolloutError(msg)
    if before.state.status == "rolled_back":
        msg = f"rollback {name!r}: rollout {before.state.spec.id!r} is rolled back already"
        raise RolloutError(msg)
    why = reason or "manual rollback"
    seen: list[RolloutState] = []

    def change(
        state: RolloutState, controller: dict[str, Any]
    ) -> tuple[RolloutState, dict[str, Any]] | None:
        seen.append(state)
        if state.status == "rolled_back":
            return None
        return state.next_revision(status="rolled_back"), controller

    record = store.update(name, change, who=who, reason=why)
    previous = seen[-1]
    if previous.status == "rolled_back":
        msg = f"rollback {name!r}: rollout {previous.spec.id!r} was rolled back meanwhile"
        raise RolloutError(msg)
    winner = previous.promoted_variant() if previous.status == "promoted" else None
    alias = str(record.controller.get("champion_alias", "champion"))
    if winner is not None:
        live = registry.aliases(name).get(alias)
        if live is not None and live.version == parse_model_ref(winner.model)[1] and live.history:
            try:
                registry.rollback(name, alias, who=who, why=f"rollback of {previous.spec.id!r}")
            except RegistryError as exc:  # the traffic is back already; say what is left
                msg = f"rollback {name!r}: traffic is back on the baseline, but {exc}"
                raise RolloutError(msg) from exc
    journal.record("rolled_back", record.state, reasons=[why], who=who)
    return record
