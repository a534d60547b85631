"""Promotion approval: a canary of a model that needs one holds before 100 % until approved.

Real registry and rollout tables (delta-rs); the controller is fed ``kind=sample`` records
for the split the stored state routes (as the workers would send them), with analysis
windows of half a second.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from lakecast.cli.main import app
from lakecast.config import load_settings, settings
from lakecast.errors import ModelNotFoundError, RolloutError
from lakecast.registry import Registry
from lakecast.rollout.approval import approve_rollout
from lakecast.rollout.controller import RolloutController
from lakecast.rollout.deploy import DeployRequest, start_rollout
from lakecast.rollout.journal import RolloutJournal, audit_decisions
from lakecast.rollout.router import Router
from lakecast.rollout.store import RolloutStore
from lakecast.rollout.strategies import RolloutState
from tests.integration.rollout_fixtures import MODEL, registry_with_champion

STEP_S, SETTLE_S = 0.4, 0.05
FAST = {
    "step_seconds": STEP_S,
    "settle_seconds": SETTLE_S,
    "max_holds": 1,
    "analysis": {"min_samples": 30},
}
STEPS = (5.0, 25.0, 50.0, 100.0)


class Fleet:
    """The samples a fleet of workers would send for the routing the store holds."""

    def __init__(self, controller: RolloutController, seed: int = 0) -> None:
        self.controller = controller
        self._rng = np.random.default_rng(seed)

    def window(self, candidate_latency_ms: float = 12.0) -> None:
        """Wait out one analysis window, then report its samples (stamped now)."""
        time.sleep(STEP_S + SETTLE_S + 0.05)
        state = self.controller.store.current(MODEL)
        assert state is not None
        now = datetime.now(UTC)
        for k in range(5):
            record = self._sample(state, candidate_latency_ms)
            record["ts"] = now - timedelta(milliseconds=5 * k)
            self.controller.samples.add(record)

    def _sample(self, state: RolloutState, candidate_latency_ms: float) -> dict[str, Any]:
        # Seeded users (the rollout id, the split's salt, is fixed too): the same split and
        # samples each run, so the same verdicts (random users made a rollback at the first
        # window once in a CI run).
        users = [f"user-{n:x}" for n in self._rng.integers(0, 1 << 40, size=1_000)]
        variants = {}
        for name, positions in Router(state).route_batch(users).by_variant().items():
            count = int(positions.size)
            latency = candidate_latency_ms if name == "candidate" else 12.0
            variants[name] = {
                "records": count,
                "errors": 0,
                "latency_ms": self._rng.gamma(9.0, latency / 9.0, size=count).tolist(),
                "model_latency_ms": self._rng.gamma(9.0, 4.0 / 9.0, size=count).tolist(),
                "scores": self._rng.beta(2.0, 5.0, size=count).tolist(),
            }
        return {
            "kind": "sample",
            "source": "fleet-0",
            "model": {"name": MODEL},
            "variants": variants,
        }


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return registry_with_champion(tmp_path / "registry")


@pytest.fixture
def store(registry: Registry) -> RolloutStore:
    return RolloutStore(registry.root)


@pytest.fixture
def journal(registry: Registry) -> RolloutJournal:
    return RolloutJournal(registry, None, who="test")


def _start(
    registry: Registry, store: RolloutStore, journal: RolloutJournal, *, approval: bool
) -> None:
    request = DeployRequest(
        MODEL,
        "1.1.0",
        "canary",
        steps=STEPS,
        controller=FAST,
        approval_required=approval,
    )
    start_rollout(registry, store, request, journal, who="test")


def _drive(controller: RolloutController, windows: int, latency_ms: float = 12.0) -> list[str]:
    """Tick through ``windows`` analysis windows; the decisions other than verdicts."""
    fleet = Fleet(controller)
    events = []
    for _ in range(windows):
        fleet.window(latency_ms)
        events += [d.event for d in controller.tick() if d.event != "verdict"]
    return events


def test_an_approval_required_canary_holds_before_100_percent_until_approved(
    registry: Registry, store: RolloutStore, journal: RolloutJournal
) -> None:
    _start(registry, store, journal, approval=True)
    controller = RolloutController(MODEL, store, registry, journal)

    assert _drive(controller, 5) == ["advanced", "advanced", "awaiting_approval"]
    held = store.record(MODEL)
    assert held is not None
    assert (held.state.status, held.state.spec.percent) == ("running", 50.0)  # type: ignore[union-attr]
    assert held.controller["awaiting_approval_since"]
    verdicts = [
        d.verdict.verdict for d in controller.decisions if d.verdict and d.event == "verdict"
    ]
    assert verdicts == ["pass"] * 5  # analysed on while it waits
    assert registry.resolve(f"{MODEL}@champion").version == "1.0.0"

    approved = approve_rollout(
        registry, store, "canary-1.1.0", journal, by="alice", reason="dashboards look right"
    )
    assert approved.controller["approval"]["by"] == "alice"
    assert [d.event for d in controller.tick()] == ["promoted"]  # no new window needed

    final = store.current(MODEL)
    assert final is not None
    assert (final.status, final.spec.percent) == ("promoted", 100.0)  # type: ignore[union-attr]
    assert registry.resolve(f"{MODEL}@champion").version == "1.1.0"
    rows = [e for e in registry.audit(MODEL) if e.action == "rollout_approved"]
    assert [(e.who, e.version, e.previous_version) for e in rows] == [("alice", "1.1.0", "1.0.0")]
    decisions = {d["event"]: d for d in audit_decisions(registry, MODEL)}
    assert decisions["approved"]["who"] == "alice"
    assert decisions["approved"]["approval"]["reason"] == "dashboards look right"
    assert "approved by alice (dashboards look right)" in decisions["promoted"]["reasons"][0]
    assert decisions["awaiting_approval"]["percent"] == 50.0


def test_a_model_without_the_option_is_promoted_as_before(
    registry: Registry, store: RolloutStore, journal: RolloutJournal
) -> None:
    _start(registry, store, journal, approval=False)
    controller = RolloutController(MODEL, store, registry, journal)
    assert _drive(controller, 3) == ["advanced", "advanced", "promoted"]
    assert registry.resolve(f"{MODEL}@champion").version == "1.1.0"
    record = store.record(MODEL)
    assert record is not None
    assert record.controller["approval_required"] is False
    with pytest.raises(RolloutError, match="is promoted"):
        approve_rollout(registry, store, MODEL, journal, by="alice")


def test_a_candidate_that_degrades_while_waiting_is_rolled_back(
    registry: Registry, store: RolloutStore, journal: RolloutJournal
) -> None:
    _start(registry, store, journal, approval=True)
    controller = RolloutController(MODEL, store, registry, journal)
    assert _drive(controller, 3) == ["advanced", "advanced", "awaiting_approval"]
    assert _drive(controller, 1, latency_ms=40.0) == ["rolled_back"]
    assert registry.resolve(f"{MODEL}@champion").version == "1.0.0"
    with pytest.raises(RolloutError, match="is rolled_back"):
        approve_rollout(registry, store, MODEL, journal, by="alice")


def test_an_approval_given_early_lets_the_canary_finish_on_its_own(
    registry: Registry, store: RolloutStore, journal: RolloutJournal
) -> None:
    _start(registry, store, journal, approval=True)
    approve_rollout(registry, store, MODEL, journal, by="alice")
    with pytest.raises(RolloutError, match="approved already by alice"):
        approve_rollout(registry, store, MODEL, journal, by="bob")
    controller = RolloutController(MODEL, store, registry, journal)
    assert _drive(controller, 3) == ["advanced", "advanced", "promoted"]


def test_approval_refusals_name_what_is_wrong(
    registry: Registry, store: RolloutStore, journal: RolloutJournal
) -> None:
    with pytest.raises(ModelNotFoundError, match="'nope'"):
        approve_rollout(registry, store, "nope", journal, by="alice")
    with pytest.raises(RolloutError, match="has no rollout"):
        approve_rollout(registry, store, MODEL, journal, by="alice")
    _start(registry, store, journal, approval=False)
    with pytest.raises(RolloutError, match="needs no approval"):
        approve_rollout(registry, store, MODEL, journal, by="alice")
    with pytest.raises(RolloutError, match="--by NAME"):
        approve_rollout(registry, store, MODEL, journal, by=" ")


def test_a_rollout_that_is_100_percent_at_once_is_refused_when_approval_is_required(
    registry: Registry, store: RolloutStore, journal: RolloutJournal
) -> None:
    for strategy, steps in (("blue_green", None), ("canary", (100.0,))):
        request = DeployRequest(
            MODEL,
            "1.1.0",
            strategy,
            steps=steps,
            approval_required=True,  # type: ignore[arg-type]
        )
        with pytest.raises(RolloutError, match=rf"a {strategy} rollout starting at 100 %"):
            start_rollout(registry, store, request, journal, who="test")
    forged = DeployRequest(
        MODEL, "1.1.0", "canary", controller={"approval": {"by": "mallory"}}, approval_required=True
    )
    with pytest.raises(RolloutError, match=r"\['approval'\] are recorded by `lakecast deploy"):
        start_rollout(registry, store, forged, journal, who="test")
    assert store.record(MODEL) is None
    assert registry.resolve(f"{MODEL}@champion").version == "1.0.0"


def test_config_names_the_models_and_env_gives_them_comma_separated(tmp_path: Path) -> None:
    file = tmp_path / "lakecast.yaml"
    file.write_text("rollout:\n  approval_required: [purchase]\n")
    assert load_settings(file, {}).rollout.approval_required == ("purchase",)
    env = {"LAKECAST__ROLLOUT__APPROVAL_REQUIRED": "purchase, ctr"}
    assert load_settings(file, env).rollout.approval_required == ("purchase", "ctr")
    file.write_text("rollout:\n  approval_required: purchase\n  approvers: [alice]\n")
    with pytest.raises(Exception, match=r"rollout.approvers: Extra inputs are not permitted"):
        load_settings(file, {})


def test_cli_start_status_and_approve(
    registry: Registry, store: RolloutStore, journal: RolloutJournal, monkeypatch: Any
) -> None:
    monkeypatch.setenv("LAKECAST__ROLLOUT__APPROVAL_REQUIRED", MODEL)
    monkeypatch.setenv("USER", "bob")
    settings.cache_clear()
    try:
        runner = CliRunner()
        base = ["deploy", "--root", registry.root, "--no-publish"]
        timing = ["--step-seconds", str(STEP_S), "--settle-seconds", str(SETTLE_S)]
        started = runner.invoke(app, [*base, MODEL, "1.1.0", "--steps", "5,25,50,100", *timing])
        assert started.exit_code == 0, started.output
        assert f"waits for `lakecast deploy approve {MODEL}`" in started.output
        status = runner.invoke(app, [*base, "status", MODEL])
        assert "approval: needs an approval before the step to 100 % (not reached" in status.output
        # The controller runs elsewhere (deploy run-controller); here, in process.
        controller = RolloutController(MODEL, store, registry, journal)
        assert _drive(controller, 3)[-1] == "awaiting_approval"
        status = runner.invoke(app, [*base, "status", MODEL])
        assert "approval: HELD: awaiting approval since" in status.output, status.output
        assert f"lakecast deploy approve {MODEL} --by NAME" in status.output

        approved = runner.invoke(app, [*base, "approve", MODEL, "--reason", "ok by me"])
        assert approved.exit_code == 0, approved.output
        assert "approved by bob" in approved.output  # --by defaults to the OS user
        assert "promotes at its next tick" in approved.output
        status = runner.invoke(app, [*base, "status", MODEL, "--json"])
        assert json.loads(status.output)["controller"]["approval"]["by"] == "bob"
        again = runner.invoke(app, [*base, "approve", MODEL, "--by", "carol"])
        assert again.exit_code != 0
        assert "approved already by bob" in str(again.exception)
        assert [d.event for d in controller.tick()] == ["promoted"]
        assert registry.resolve(f"{MODEL}@champion").version == "1.1.0"
    finally:
        settings.cache_clear()
