"""Rollout plans (the conf/rollouts examples, CLI options) into states; bandit reward joins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lakecast.config import PROJECT_ROOT
from lakecast.errors import RolloutError
from lakecast.rollout.controller import ControllerSettings
from lakecast.rollout.deploy import DeployRequest, build_state, load_rollout_file, parse_strategy
from lakecast.rollout.rewards import RewardTracker
from lakecast.rollout.router import Router
from lakecast.rollout.strategies import ABTest, Bandit, Canary, MultiModel, Shadow

EXAMPLES = sorted((PROJECT_ROOT / "conf" / "rollouts").iterdir())
CHAMPION, CANDIDATE = "ctr:1.0.0", "ctr:1.1.0"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_makes_a_valid_rollout(path: Path) -> None:
    plan = load_rollout_file(path)
    state = build_state(DeployRequest("ctr", "1.1.0", plan=plan), CHAMPION, CANDIDATE)
    ControllerSettings.model_validate(plan.get("controller") or {})
    models = {v.model for v in state.spec.variants()} | set(state.spec.shadows)
    assert models <= {CHAMPION, CANDIDATE}  # placeholders were replaced
    assert CANDIDATE in models
    assert state.status == "running"


def test_examples_cover_every_driven_strategy() -> None:
    kinds = {
        type(
            build_state(DeployRequest("ctr", "1.1.0", plan=load_rollout_file(p)), "a:1", "a:2").spec
        )
        for p in EXAMPLES
    }
    assert kinds == {Canary, ABTest, Shadow, MultiModel, Bandit}


def test_cli_options_win_over_the_file() -> None:
    plan = load_rollout_file(PROJECT_ROOT / "conf" / "rollouts" / "canary.yaml")
    request = DeployRequest("ctr", "1.1.0", steps=(10.0, 100.0), rollout_id="c-9", plan=plan)
    spec = build_state(request, CHAMPION, CANDIDATE).spec
    assert isinstance(spec, Canary)
    assert (spec.id, spec.steps, spec.candidate) == ("c-9", (10.0, 100.0), CANDIDATE)


def test_ab_split_from_the_command_line() -> None:
    state = build_state(DeployRequest("ctr", "1.1.0", "ab", split=20.0), CHAMPION, CANDIDATE)
    assert isinstance(state.spec, ABTest)
    assert [(v.name, v.model, v.weight) for v in state.spec.split] == [
        ("champion", CHAMPION, 80.0),
        ("candidate", CANDIDATE, 20.0),
    ]


def test_blue_green_switches_at_once() -> None:
    state = build_state(DeployRequest("ctr", "1.1.0", "blue_green"), CHAMPION, CANDIDATE)
    assert state.status == "promoted"
    assert {r.model for r in Router(state).route_batch([f"u{i}" for i in range(200)])} == {
        CANDIDATE
    }


def test_bad_plans_are_refused_with_the_reason() -> None:
    with pytest.raises(RolloutError, match="needs `rules`"):
        build_state(DeployRequest("ctr", "1.1.0", "multi_model"), CHAMPION, CANDIDATE)
    with pytest.raises(RolloutError, match="steps must strictly increase"):
        build_state(DeployRequest("ctr", "1.1.0", "canary", steps=(50, 25)), CHAMPION, CANDIDATE)
    with pytest.raises(RolloutError, match="unknown rollout strategy 'rainbow'"):
        parse_strategy("rainbow")
    assert parse_strategy("Blue-Green") == "blue_green"
    assert parse_strategy("multi-model") == "multi_model"


def test_rewards_follow_the_latest_prediction_within_the_window() -> None:
    t0 = datetime(2024, 5, 2, tzinfo=UTC)
    tracker = RewardTracker("exp", ["a", "b"], window=timedelta(minutes=10))

    def prediction(user: str, variant: str, minute: int, experiment: str = "exp") -> None:
        ts = (t0 + timedelta(minutes=minute)).isoformat()
        tracker.add_prediction(
            {"user_id": user, "variant": variant, "experiment": experiment, "ts": ts}
        )

    def purchase(user: str, minute: int) -> None:
        ts = (t0 + timedelta(minutes=minute)).isoformat()
        tracker.add_event({"user_id": user, "event_type": "purchase", "ts": ts})

    prediction("u1", "a", 0)
    prediction("u1", "b", 5)
    purchase("u1", 7)  # follows b's prediction
    purchase("u2", 3)  # u2's prediction arrives later: waits for it
    prediction("u2", "a", 1)
    prediction("u3", "b", 0)
    purchase("u3", 30)  # too late
    prediction("u4", "a", 0, experiment="other")  # another experiment: ignored
    tracker.settle()
    assert tracker.impressions == {"a": 2, "b": 2}
    assert tracker.rewards == {"a": 1, "b": 1}
    purchase("u1", 8)  # b's prediction was rewarded already
    tracker.settle()
    assert tracker.rewards == {"a": 1, "b": 1}
