"""The rollout controller judging a canary on outcome evidence (delta-rs registry, no JVM)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lakecast.registry import Registry
from lakecast.rollout.analysis import OutcomeEvidence, outcome_samples
from lakecast.rollout.controller import RolloutController
from lakecast.rollout.journal import RolloutJournal
from lakecast.rollout.store import RolloutStore
from lakecast.rollout.strategies import Canary, RolloutState, parse_rollout_spec
from lakecast.testing.models import register_model

pytestmark = pytest.mark.unit


class FixedOutcomes:
    """Outcome evidence with the candidate's scores ``noise`` away from the truth."""

    def __init__(self, candidate_noise: float, lasted_s: float) -> None:
        self.candidate_noise = candidate_noise
        self.lasted_s = lasted_s

    def evidence(self, spec: Canary, since: datetime, until: datetime) -> OutcomeEvidence:
        def variant(seed: int, noise: float) -> dict[str, np.ndarray]:
            rng = np.random.default_rng(seed)
            logit = rng.normal(-1.5, 1.2, 2_000)
            labels = (rng.random(logit.size) < 1 / (1 + np.exp(-logit))).astype(float)
            return outcome_samples(
                labels, 1 / (1 + np.exp(-(logit + rng.normal(0, noise, logit.size))))
            )

        samples = {"champion": variant(0, 0.8), "candidate": variant(1, self.candidate_noise)}
        return OutcomeEvidence(samples=samples, lasted_s=self.lasted_s)


class Sink:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def send(self, fields: Any) -> None:
        self.records.append(dict(fields))


def _run(tmp_path: Path, source: FixedOutcomes) -> tuple[RolloutState | None, Registry, Sink]:
    root = str(tmp_path / "registry")
    champion = register_model(root, seed=0)
    candidate = register_model(root, seed=1, alias=None)
    registry, store, sink = Registry(root), RolloutStore(root), Sink()
    spec = parse_rollout_spec(
        {"strategy": "canary", "id": "outcomes", "champion": champion.ref,
         "candidate": candidate.ref, "steps": [50, 100]}
    )  # fmt: skip
    controller_settings = {
        "step_seconds": 1.0,
        "settle_seconds": 0.0,
        "max_holds": 0,
        "outcomes": {"horizon_s": 86_400.0},
    }
    store.start(RolloutState(model="purchase", spec=spec), controller_settings, who="test")
    controller = RolloutController(
        "purchase",
        store,
        registry,
        RolloutJournal(registry, sink),
        outcomes=source,
        now=lambda: datetime.now(UTC) + timedelta(seconds=5),
    )
    controller.tick()
    return store.current("purchase"), registry, sink


def test_better_outcomes_after_the_horizon_promote(tmp_path: Path) -> None:
    state, registry, sink = _run(tmp_path, FixedOutcomes(candidate_noise=0.0, lasted_s=90_000))
    assert state is not None and state.status == "promoted"
    assert registry.resolve("purchase@champion").version == "1.1.0"
    (verdict,) = [r for r in sink.records if r["event"] == "verdict"]
    judged = {m["name"]: m["classification"] for m in verdict["verdict"]["metrics"]}
    assert judged == {"outcome_log_loss": "pass", "outcome_brier": "pass"}


def test_worse_outcomes_roll_back(tmp_path: Path) -> None:
    state, registry, _ = _run(tmp_path, FixedOutcomes(candidate_noise=2.5, lasted_s=90_000))
    assert state is not None and state.status == "rolled_back"
    assert registry.resolve("purchase@champion").version == "1.0.0"


def test_before_the_horizon_outcomes_are_not_judged(tmp_path: Path) -> None:
    state, _, sink = _run(tmp_path, FixedOutcomes(candidate_noise=0.0, lasted_s=3_600))
    (verdict,) = [r for r in sink.records if r["event"] == "verdict"]
    assert verdict["verdict"]["verdict"] == "insufficient_data"
    assert any("not judged yet" in reason for reason in verdict["reasons"])
    assert state is not None and state.status == "rolled_back"  # max_holds 0
