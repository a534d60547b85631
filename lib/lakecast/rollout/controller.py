"""The rollout controller: drives a model's running rollout from its evidence.

Canary: each step waits its window, then the candidate's and the champion's samples from the
``metrics`` topic (``kind=sample``, per-variant raw values) go through
:func:`~lakecast.rollout.analysis.analyse_canary`. ``pass`` moves to the next step (reaching
100 % promotes: the registry's champion alias moves to the candidate; for a model that needs
an approval, the canary holds at its last step below 100 % until one is recorded, see
:mod:`lakecast.rollout.approval`, and keeps being analysed meanwhile), ``marginal`` and
``insufficient_data`` hold and re-analyse over a longer window (at most ``max_holds`` times,
then roll back), ``fail`` rolls back at once: the state becomes ``rolled_back`` and the
workers send all traffic to the champion at their next poll. Bandit: the weights are
recomputed by Thompson sampling from impressions and rewards (see
:mod:`lakecast.rollout.rewards`). Every decision goes through the
:class:`~lakecast.rollout.journal.RolloutJournal`. Other strategies need no driving.

State changes are compare-and-sets on the rollout store: a controller never overwrites a
rollback or a new rollout that someone else wrote meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from lakecast.registry import Registry
from lakecast.rollout.analysis import (
    CanaryConfig,
    CanaryVerdict,
    MetricSpec,
    OutcomeAnalysis,
    OutcomeEvidence,
    analyse_canary,
    judged_metrics,
)
from lakecast.rollout.approval import Approval
from lakecast.rollout.bandit import ThompsonBandit
from lakecast.rollout.evidence import (
    ERROR_RATE,
    LATENCY,
    MODEL_LATENCY,
    SCORE,
    SampleBook,
    TopicTail,
    VariantEvidence,
    decode_metrics,
)
from lakecast.rollout.journal import RolloutJournal
from lakecast.rollout.rewards import RewardTracker
from lakecast.rollout.store import RolloutRecord, RolloutStore
from lakecast.rollout.strategies import Bandit, Canary, RolloutState, parse_model_ref

log = logging.getLogger(__name__)

DEFAULT_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        name=LATENCY, bad_direction="high", tolerance=1.0, relative_tolerance=0.2, critical=True
    ),
    MetricSpec(name=MODEL_LATENCY, bad_direction="high", tolerance=1.0, relative_tolerance=0.2),
    MetricSpec(name=ERROR_RATE, bad_direction="high", critical=True),
    MetricSpec(name=SCORE, bad_direction="either", tolerance=0.02, critical=True),
)


class OutcomeSource(Protocol):
    """Where a canary's outcome evidence comes from: each variant's per-prediction outcome
    samples (:func:`lakecast.rollout.analysis.outcome_samples`) for predictions whose label
    horizon has passed."""

    def evidence(self, spec: Canary, since: datetime, until: datetime) -> OutcomeEvidence: ...


class BanditSettings(BaseModel):
    """How rewards are joined and how often the weights move."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reward_window_s: float = Field(default=600.0, gt=0)
    update_seconds: float = Field(default=10.0, gt=0)
    draws: int = Field(default=10_000, ge=100)
    min_change: float = Field(default=0.5, ge=0, description="percentage points")
    reward_event: str = "purchase"
    seed: int = 0


class ControllerSettings(BaseModel):
    """How a rollout is driven; stored with the rollout so any controller process reads it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    step_seconds: float = Field(default=300.0, gt=0)
    settle_seconds: float = Field(default=10.0, ge=0, description="ignored after a step change")
    max_holds: int = Field(default=3, ge=0)
    analysis: CanaryConfig = Field(default_factory=CanaryConfig)
    metrics: tuple[MetricSpec, ...] = DEFAULT_METRICS
    # Opt-in: outcome metrics once the rollout has lasted the label horizon (needs an
    # outcome source given to the controller).
    outcomes: OutcomeAnalysis | None = None
    champion_alias: str = "champion"
    bandit: BanditSettings = Field(default_factory=BanditSettings)
    # Promotion approval (lakecast.rollout.approval): whether the step to 100 % waits for
    # one, the approval once given, and since when the controller has been holding for it.
    approval_required: bool = False
    approval: Approval | None = None
    awaiting_approval_since: datetime | None = None

    def approved(self, rollout_id: str) -> bool:
        """Whether nothing stands between ``rollout_id`` and 100 %."""
        if not self.approval_required:
            return True
        return self.approval is not None and self.approval.rollout_id == rollout_id


@dataclass(frozen=True)
class Decision:
    """What one tick decided (``event``) and the state it left."""

    event: str
    state: RolloutState
    verdict: CanaryVerdict | None = None


def utc_now() -> datetime:
    return datetime.now(UTC)


class RolloutController:
    """Drives one model's rollout; call :meth:`tick` in a loop, or :meth:`run`.

    Args:
        model: the model whose rollout is driven.
        store: where the rollout state lives.
        registry: where a passing canary's candidate becomes champion.
        journal: where decisions are recorded.
        metrics: the ``metrics`` topic (samples); needed for a canary.
        outcomes: outcome evidence, for a canary whose settings opt in to outcome metrics.
        predictions, events: the ``predictions`` and ``events`` topics; needed for a bandit.
        now: the wall clock (sample times are wall-clock times).
    """

    def __init__(
        self,
        model: str,
        store: RolloutStore,
        registry: Registry,
        journal: RolloutJournal,
        *,
        metrics: TopicTail | None = None,
        predictions: TopicTail | None = None,
        events: TopicTail | None = None,
        who: str = "rollout-controller",
        now: Callable[[], datetime] = utc_now,
        outcomes: OutcomeSource | None = None,
    ) -> None:
        self.model = model
        self.outcomes = outcomes
        self.store = store
        self.registry = registry
        self.journal = journal
        self.metrics = metrics
        self.predictions = predictions
        self.events = events
        self.who = who
        self.now = now
        self.samples = SampleBook(model)
        self.rewards: RewardTracker | None = None
        self.decisions: list[Decision] = []
        self._step_key: tuple[str, int, bool] | None = None
        self._step_started = now()
        self._holds = 0
        self._next_weights: datetime | None = None

    # ---- reading evidence ------------------------------------------------------------
    def ingest(self, timeout_ms: int = 200) -> None:
        """Read what arrived on the topics into the sample book and the reward tracker."""
        if self.metrics is not None:
            for record in decode_metrics(self.metrics.poll(timeout_ms)):
                self.samples.add(record)
        if self.rewards is not None:
            if self.predictions is not None:
                for value in self.predictions.poll(timeout_ms):
                    self.rewards.add_prediction(value)
            if self.events is not None:
                for value in self.events.poll(timeout_ms):
                    self.rewards.add_event(value)
            self.rewards.settle()

    # ---- deciding --------------------------------------------------------------------
    def tick(self) -> list[Decision]:
        """Act on the current state once; returns what was decided (often nothing)."""
        record = self.store.record(self.model)
        if record is None or record.state.status != "running":
            return []
        settings = ControllerSettings.model_validate(record.controller)
        spec = record.state.spec
        decided: list[Decision] = []
        if isinstance(spec, Canary):
            decided = self._tick_canary(record, spec, settings)
        elif isinstance(spec, Bandit):
            decided = self._tick_bandit(record, spec, settings)
        self.decisions.extend(decided)
        return decided

    def run(
        self,
        stop: threading.Event | None = None,
        *,
        timeout_s: float | None = None,
        until_done: bool = True,
        poll_ms: int = 200,
    ) -> RolloutState | None:
        """Ingest and tick until the rollout ends (or ``stop`` / ``timeout_s``)."""
        stop = stop or threading.Event()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not stop.is_set():
            self.ingest(poll_ms)
            self.tick()
            state = self.store.current(self.model)
            if until_done and (state is None or state.status in ("promoted", "rolled_back")):
                return state
            if deadline is not None and time.monotonic() >= deadline:
                return state
        return self.store.current(self.model)

    def _tick_canary(
        self, record: RolloutRecord, spec: Canary, settings: ControllerSettings
    ) -> list[Decision]:
        state, now = record.state, self.now()
        awaiting = settings.awaiting_approval_since is not None
        key = (spec.id, spec.step_index, awaiting)
        if key != self._step_key:
            self._step_key = key
            self._step_started = state.updated_at or now
            self._holds = 0
        if awaiting and settings.approved(spec.id):
            last = spec.model_copy(update={"step_index": len(spec.steps) - 1})
            return self._promote(record, last, [], settings)
        if spec.percent >= 100.0:
            reasons = ["the candidate serves 100 % of traffic"]
            return self._promote_when_approved(record, spec, spec, reasons, settings)
        since = self._step_started + timedelta(seconds=settings.settle_seconds)
        due = since + timedelta(seconds=settings.step_seconds * (self._holds + 1))
        if now < due:
            return []
        verdict = self.analyse(spec, settings, since, now)
        decided = [Decision("verdict", state, verdict)]
        self.journal.record(
            "verdict",
            state,
            reasons=verdict.reasons,
            details={
                "verdict": verdict.model_dump(mode="json"),
                "window": {"since": since.isoformat(), "until": now.isoformat()},
                "holds": self._holds,
            },
            who=self.who,
        )
        if verdict.action == "rollback":
            return decided + self._roll_back(record, spec, verdict.reasons, verdict)
        if verdict.action == "hold":
            self._holds += 1
            if self._holds > settings.max_holds:
                reasons = [
                    f"still {verdict.verdict} after {self._holds} analyses "
                    f"(at most {settings.max_holds} holds)",
                    *verdict.reasons,
                ]
                return decided + self._roll_back(record, spec, reasons, verdict)
            self.journal.record("held", state, reasons=verdict.reasons, who=self.who)
            return [*decided, Decision("held", state, verdict)]
        if awaiting:  # still good while it waits: watch the next window
            self._step_started, self._holds = now, 0
            return decided
        advanced = spec.advanced()
        if spec.at_last_step or (advanced.at_last_step and advanced.percent >= 100.0):
            return decided + self._promote_when_approved(
                record, spec, advanced, verdict.reasons, settings, verdict
            )
        return decided + self._advance(record, advanced, verdict)

    def analyse(
        self, spec: Canary, settings: ControllerSettings, since: datetime, until: datetime
    ) -> CanaryVerdict:
        """The canary verdict over the samples of ``[since, until]``."""
        pooled = self.samples.window(since, until)
        baseline = pooled.get("champion", VariantEvidence()).arrays()
        candidate = pooled.get("candidate", VariantEvidence()).arrays()
        champion = pooled.get("champion", VariantEvidence())
        challenger = pooled.get("candidate", VariantEvidence())
        # Users are what the split assigns; count them where the workers report them.
        by_users = champion.users > 0 and challenger.users > 0
        records = {
            "champion": champion.users if by_users else champion.records,
            "candidate": challenger.users if by_users else challenger.records,
        }
        wanted, outcome_note = tuple(settings.metrics), None
        if settings.outcomes is not None and self.outcomes is not None:
            found = self.outcomes.evidence(spec, since, until)
            wanted, outcome_note = judged_metrics(wanted, settings.outcomes, found.lasted_s)
            if outcome_note is None:
                baseline |= dict(found.samples.get("champion", {}))
                candidate |= dict(found.samples.get("candidate", {}))
        # A metric no worker reports for either variant is not measured by this fleet (not
        # "too few samples"): judge the others rather than hold forever on it.
        unreported = [
            m.name
            for m in wanted
            if len(baseline.get(m.name, ())) == 0 and len(candidate.get(m.name, ())) == 0
        ]
        metrics = [m for m in wanted if m.name not in unreported] or list(wanted)
        verdict = analyse_canary(
            baseline,
            candidate,
            metrics,
            settings.analysis,
            observed_counts=records,
            expected_split={"champion": 100.0 - spec.percent, "candidate": spec.percent},
            rollout_id=spec.id,
            baseline_model=spec.champion,
            candidate_model=spec.candidate,
        )
        notes = [outcome_note] if outcome_note else []
        if len(metrics) < len(wanted):
            notes.append(f"not reported by the workers, so not judged: {', '.join(unreported)}")
        if notes:
            verdict = verdict.model_copy(update={"reasons": [*verdict.reasons, *notes]})
        return verdict

    @staticmethod
    def _still(spec_id: str) -> Callable[[RolloutState], bool]:
        def same(state: RolloutState) -> bool:
            return state.spec.id == spec_id and state.status == "running"

        return same

    def _change(
        self,
        record: RolloutRecord,
        changes: dict[str, Any],
        reason: str,
        settings: dict[str, Any] | None = None,
    ) -> RolloutState | None:
        """Compare-and-set ``changes`` (and ``settings`` into the stored controller settings,
        keeping what another writer put there) if the same rollout is still running."""
        still = self._still(record.state.spec.id)
        applied = [False]  # whether the attempt that committed applied the change

        def change(
            state: RolloutState, controller: dict[str, Any]
        ) -> tuple[RolloutState, dict[str, Any]] | None:
            applied[0] = still(state)
            if not applied[0]:
                return None
            return state.next_revision(**changes), controller | (settings or {})

        written = self.store.update(self.model, change, who=self.who, reason=reason)
        return written.state if applied[0] else None

    def _advance(
        self, record: RolloutRecord, advanced: Canary, verdict: CanaryVerdict
    ) -> list[Decision]:
        reason = f"canary step {advanced.step_index}: {advanced.percent:g} % after a pass"
        state = self._change(record, {"spec": advanced.model_dump()}, reason)
        if state is None:
            return []
        self.journal.record("advanced", state, reasons=[reason], who=self.who)
        return [Decision("advanced", state, verdict)]

    def _promote_when_approved(
        self,
        record: RolloutRecord,
        current: Canary,
        final: Canary,
        reasons: list[str],
        settings: ControllerSettings,
        verdict: CanaryVerdict | None = None,
    ) -> list[Decision]:
        """Promote, unless the model needs an approval that has not been given: then hold at
        ``current`` and record (once) that the rollout is waiting for one."""
        if settings.approved(current.id):
            return self._promote(record, final, reasons, settings, verdict)
        if settings.awaiting_approval_since is not None:
            return []
        why = (
            f"canary {current.id!r} passed up to {current.percent:g} %; the step to 100 % "
            f"waits for an approval (lakecast deploy approve {self.model} --by NAME)"
        )
        since = {"awaiting_approval_since": self.now().isoformat()}
        state = self._change(record, {}, why, since)
        if state is None:
            return []
        self.journal.record("awaiting_approval", state, reasons=[why, *reasons], who=self.who)
        return [Decision("awaiting_approval", state, verdict)]

    def _promote(
        self,
        record: RolloutRecord,
        final: Canary,
        reasons: list[str],
        settings: ControllerSettings,
        verdict: CanaryVerdict | None = None,
    ) -> list[Decision]:
        last = final.model_copy(update={"step_index": len(final.steps) - 1})
        why = f"canary {final.id!r} passed every step"
        if settings.approval_required and settings.approval is not None:
            approval = settings.approval
            why += f", approved by {approval.by}" + (
                f" ({approval.reason})" if approval.reason else ""
            )
        changes = {"spec": last.model_dump(), "status": "promoted", "winner": "candidate"}
        state = self._change(record, changes, why)
        if state is None:
            return []
        name, version = parse_model_ref(final.candidate)
        self.registry.promote(name, version, settings.champion_alias, who=self.who, why=why)
        self.journal.record("promoted", state, reasons=[why, *reasons], who=self.who)
        return [Decision("promoted", state, verdict)]

    def _roll_back(
        self,
        record: RolloutRecord,
        spec: Canary,
        reasons: list[str],
        verdict: CanaryVerdict | None,
    ) -> list[Decision]:
        why = f"canary {spec.id!r} rolled back: " + "; ".join(reasons[:3])
        state = self._change(record, {"status": "rolled_back"}, why[:500])
        if state is None:
            return []
        self.journal.record("rolled_back", state, reasons=reasons, who=self.who)
        return [Decision("rolled_back", state, verdict)]

    def _tick_bandit(
        self, record: RolloutRecord, spec: Bandit, settings: ControllerSettings
    ) -> list[Decision]:
        now, options = self.now(), settings.bandit
        names = [arm.name for arm in spec.arms]
        if self.rewards is None or self.rewards.experiment != spec.id:
            self.rewards = RewardTracker(
                spec.id,
                names,
                timedelta(seconds=options.reward_window_s),
                options.reward_event,
            )
            self._next_weights = now + timedelta(seconds=options.update_seconds)
            return []
        if self._next_weights is not None and now < self._next_weights:
            return []
        self._next_weights = now + timedelta(seconds=options.update_seconds)
        bandit = ThompsonBandit(names, seed=options.seed + record.revision)
        for name in names:
            bandit.record_impression(name, self.rewards.impressions[name])
            bandit.record_reward(name, self.rewards.rewards[name])
        updated = spec.with_weights(bandit.weights(options.draws))
        old, new = spec.current_weights(), updated.current_weights()
        if max(abs(old[n] - new[n]) for n in names) < options.min_change:
            return []
        reason = "bandit weights " + ", ".join(f"{n}={new[n]:.1f}%" for n in names)
        state = self._change(record, {"spec": updated.model_dump()}, reason)
        if state is None:
            return []
        self.journal.record(
            "weights",
            state,
            reasons=[reason],
            details={
                "weights": new,
                "impressions": dict(self.rewards.impressions),
                "rewards": dict(self.rewards.rewards),
                "means": bandit.means(),
            },
            who=self.who,
        )
        return [Decision("weights", state)]
