"""``lakecast retrain``: one pass of the loop from evidence to a promoted (or refused) version.

1. Read the metrics records about the live version (``kind=quality``, ``drift``, ``staleness``)
   and apply the policy (:mod:`lakecast.retrain.policy`).
2. If a trigger fired: train a candidate of the live recipe on the freshest labelled days
   (:mod:`lakecast.retrain.candidate`), aliased ``challenger``.
3. Deploy it as ``lakecast deploy`` does (:func:`lakecast.rollout.deploy.start_rollout`): the
   gates against the champion, then a canary whose plan opts in to outcome metrics.
4. Drive the canary with the rollout controller. The evidence is the newest settled days,
   replayed through the canary's split (:mod:`lakecast.retrain.replay_canary`): a retrain has
   no live traffic of its candidate yet, and these days' outcomes are known.
5. Write the decision record: ``kind=retrain`` to the ``metrics`` topic and a ``retrain`` row
   to the registry's audit, with the trigger, its evidence, what was done and how it ended.
   Every rollout step is recorded by the rollout journal (``kind=rollout`` + audit) as usual.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from lakecast.config import QualitySettings, RetrainSettings
from lakecast.errors import RolloutError
from lakecast.registry import Registry
from lakecast.retrain.candidate import CandidateRequest, train_candidate
from lakecast.retrain.policy import RetrainDecision, decide
from lakecast.retrain.replay_canary import ReplayOutcomes, settled_rows
from lakecast.rollout.journal import MetricsSink, RolloutJournal

log = logging.getLogger(__name__)

RETRAIN_KIND = "retrain"
AUDIT_ACTION = "retrain"
WHO = "lakecast-retrain"


@dataclass(frozen=True)
class RetrainRequest:
    """What one pass needs; the records are the metrics topic's, decoded."""

    model: str
    features_path: str
    registry_root: str
    records: Sequence[Mapping[str, Any]]
    retrain: RetrainSettings = field(default_factory=RetrainSettings)
    quality: QualitySettings = field(default_factory=QualitySettings)
    champion_alias: str = "champion"
    canary_timeout_s: float = 120.0
    dry_run: bool = False
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


def decision_record(
    decision: RetrainDecision,
    action: str,
    outcome: str,
    new_version: str | None = None,
    **details: Any,
) -> dict[str, Any]:
    """The fields of a ``kind=retrain`` record (the contract's, plus ``details``)."""
    return {
        "model": decision.model,
        "version": decision.version,
        "trigger": decision.trigger,
        "evidence": decision.evidence,
        "reasons": decision.reasons,
        "action": action,
        "new_version": new_version,
        "outcome": outcome,
        **details,
    }


def audit_decision(registry: Registry, record: Mapping[str, Any]) -> None:
    """One ``retrain`` row in the registry's audit: the record as JSON in ``reason``."""
    from lakecast.registry.store import utc_now

    registry.tables.append(
        "audit",
        [
            {
                "at": utc_now(),
                "who": WHO,
                "action": AUDIT_ACTION,
                "name": record["model"],
                "version": record.get("new_version") or record["version"],
                "alias": None,
                "previous_version": record["version"],
                "seq": None,
                "reason": orjson.dumps(record, option=orjson.OPT_SORT_KEYS, default=str).decode(),
            }
        ],
    )


def run_retrain(request: RetrainRequest, sink: MetricsSink | None) -> dict[str, Any]:
    """One pass of the loop (see the module docstring); returns the decision record.

    ``sink`` takes the ``kind=rollout`` records of the canary; the caller sends the returned
    ``kind=retrain`` record.

    Raises:
        ModelNotFoundError: the model has no live version under ``champion_alias``.
    """
    registry = Registry(request.registry_root)
    live = registry.resolve(f"{request.model}@{request.champion_alias}")
    decision = decide(
        request.model,
        live.version,
        live.created_at,
        request.records,
        request.retrain,
        request.quality,
        request.now,
    )
    if not decision.retrain:
        record = decision_record(decision, "none", "no_trigger")
    elif request.dry_run:
        record = decision_record(decision, "none", "dry_run")
    else:
        record = _retrain_and_deploy(registry, request, decision, sink)
    audit_decision(registry, record)
    log.info("retrain decision for %s: %s", request.model, record["outcome"], extra=record)
    return record


def _retrain_and_deploy(
    registry: Registry,
    request: RetrainRequest,
    decision: RetrainDecision,
    sink: MetricsSink | None,
) -> dict[str, Any]:
    from lakecast.rollout.controller import RolloutController
    from lakecast.rollout.deploy import DeployRequest, start_rollout
    from lakecast.rollout.store import RolloutStore

    settings = request.retrain
    live = registry.resolve(f"{request.model}@{request.champion_alias}")
    reason = f"retrain ({decision.trigger}): " + "; ".join(decision.reasons[:2])
    candidate = train_candidate(
        registry,
        CandidateRequest(
            features_path=request.features_path,
            model_name=request.model,
            flavor=live.flavor,
            train_days=settings.train_days,
            holdout_days=settings.holdout_days,
            seed=settings.seed,
            reason=reason[:500],
        ),
    )
    trained = {"holdout": {k: v for k, v in candidate.metrics.items() if k.startswith("holdout_")}}
    store = RolloutStore(registry.root)
    journal = RolloutJournal(registry, sink, who=WHO)
    deploy = DeployRequest(
        name=request.model,
        version=candidate.version,
        strategy="canary",
        steps=settings.canary_steps,
        controller={
            "step_seconds": settings.canary_step_seconds,
            "settle_seconds": 0.0,
            "max_holds": 0,
            "outcomes": {"horizon_s": 86_400.0},
        },
        champion_alias=request.champion_alias,
        replace_running=False,  # never over a rollout someone else is running
        reason=reason[:500],
    )
    try:
        started, gates = start_rollout(registry, store, deploy, journal, who=WHO)
    except RolloutError as exc:
        return decision_record(
            decision, "retrained", "refused", candidate.version, refused=str(exc), **trained
        )
    replay = ReplayOutcomes(
        registry,
        request.model,
        settled_rows(request.features_path, settings.canary_days),
        settings.canary_days,
    )
    controller = RolloutController(
        request.model, store, registry, journal, who=WHO, outcomes=replay
    )
    state = _drive(controller, request.canary_timeout_s)
    verdicts = [
        d.verdict.model_dump(mode="json", include={"verdict", "score", "reasons"})
        for d in controller.decisions
        if d.verdict is not None and d.event == "verdict"
    ]
    outcome = "timed_out" if state is None or state.status == "running" else state.status
    return decision_record(
        decision,
        "retrained_and_canaried",
        outcome,
        candidate.version,
        rollout_id=started.state.spec.id,
        gates=[r.message for r in gates.results],
        verdicts=verdicts,
        replayed=replay.scored,
        **trained,
    )


def _drive(controller: Any, timeout_s: float, poll_s: float = 0.2) -> Any:
    """Tick the controller until the rollout ends or ``timeout_s`` passes (it reads no
    topic here, so it sleeps between ticks rather than blocking in a poll)."""
    deadline = time.monotonic() + timeout_s
    while True:
        controller.tick()
        state = controller.store.current(controller.model)
        if state is None or state.status in ("promoted", "rolled_back"):
            return state
        if time.monotonic() >= deadline:
            return state
        time.sleep(poll_s)


def decode_records(values: Iterable[bytes | None]) -> list[dict[str, Any]]:
    """Decode metrics-topic values, skipping what breaks the envelope (logged)."""
    from lakecast.errors import InvalidRecordError
    from lakecast.kafka.serde import decode_metric

    records = []
    for value in values:
        try:
            records.append(decode_metric(value))
        except InvalidRecordError as exc:
            log.warning("retrain: skipped a bad metrics record: %s", exc)
    return records
