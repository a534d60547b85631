"""Rollout state as data, and the router that applies it to events."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from lakecast.errors import RolloutError
from lakecast.rollout.bucketing import bucket
from lakecast.rollout.router import Router
from lakecast.rollout.strategies import (
    Bandit,
    BlueGreen,
    Canary,
    RolloutState,
    Shadow,
    Variant,
    parse_model_ref,
    parse_rollout_spec,
)

KEYS = [f"user-{i}" for i in range(10_000)]


def _canary(step_index: int = 0, **extra: object) -> RolloutState:
    spec = {
        "strategy": "canary",
        "id": "churn-canary-7",
        "champion": "churn:1.0.0",
        "candidate": "churn:1.1.0",
        "step_index": step_index,
        **extra,
    }
    return RolloutState.model_validate({"model": "churn", "spec": spec})


def test_canary_defaults_to_5_25_50_100() -> None:
    state = _canary()
    assert isinstance(state.spec, Canary)
    assert state.spec.steps == (5.0, 25.0, 50.0, 100.0)
    assert state.spec.percent == 5.0
    assert state.spec.advanced().advanced().percent == 50.0
    assert state.spec.advanced().advanced().advanced().at_last_step


def test_canary_routes_its_step_share_and_stays_sticky() -> None:
    previous: set[str] = set()
    for step in range(4):
        router = Router(_canary(step))
        routes = router.route_batch(KEYS)
        on_candidate = {k for k, r in zip(KEYS, routes, strict=True) if r.variant == "candidate"}
        percent = (5, 25, 50, 100)[step]
        assert abs(len(on_candidate) / len(KEYS) - percent / 100) < 0.02
        assert previous <= on_candidate
        previous = on_candidate
        # The single-event path gives the same answer as the batch path.
        for key in KEYS[:300]:
            single = router.route(key)
            assert single.variant == ("candidate" if key in on_candidate else "champion")
    route = Router(_canary(1)).route(KEYS[0])
    expected_model = "churn:1.1.0" if bucket("churn-canary-7", KEYS[0]) < 2500 else "churn:1.0.0"
    assert route.model == expected_model
    assert route.experiment == "churn-canary-7"


def test_rolled_back_and_promoted_states_pin_everyone() -> None:
    state = _canary(2)
    back = Router(state.next_revision(status="rolled_back")).route_batch(KEYS[:2000])
    assert set(back.by_variant()) == {"champion"}
    promoted = state.next_revision(status="promoted")
    assert promoted.revision == state.revision + 1
    assert set(Router(promoted).route_batch(KEYS[:2000]).by_model()) == {"churn:1.1.0"}


def test_ab_split_by_weights_and_json_round_trip() -> None:
    doc = {
        "model": "ranker",
        "status": "running",
        "spec": {
            "strategy": "ab",
            "id": "exp-42",
            "split": [
                {"name": "variant-a", "model": "ranker:3.0.0", "weight": 50},
                {"name": "variant-b", "model": "ranker:3.1.0", "weight": 30},
                {"name": "variant-c", "model": "ranker:3.2.0", "weight": 20},
            ],
        },
    }
    state = RolloutState.from_json(json.dumps(doc))
    again = RolloutState.from_json(state.to_json())
    assert again == state
    routes = Router(again).route_batch(KEYS)
    groups = routes.by_variant()
    for name, share in (("variant-a", 0.5), ("variant-b", 0.3), ("variant-c", 0.2)):
        assert abs(groups[name].size / len(KEYS) - share) < 0.02
    assert {r.experiment for r in routes} == {"exp-42"}
    assert sum(len(p) for p in routes.by_model().values()) == len(KEYS)


def test_blue_green_serves_the_active_colour() -> None:
    spec = {"strategy": "blue_green", "id": "bg", "blue": "m:1.0.0", "green": "m:2.0.0"}
    state = RolloutState.model_validate({"model": "m", "spec": spec})
    assert {r.model for r in Router(state).route_batch(KEYS[:500])} == {"m:1.0.0"}
    assert isinstance(state.spec, BlueGreen)
    switched = state.next_revision(spec=state.spec.switched())
    assert {r.variant for r in Router(switched).route_batch(KEYS[:500])} == {"green"}


def test_shadow_models_score_a_sample_without_serving() -> None:
    spec = Shadow(id="sh", champion="m:1.0.0", shadows=("m:2.0.0", "m:2.1.0"), shadow_percent=20)
    routes = Router(RolloutState(model="m", spec=spec)).route_batch(KEYS)
    assert set(routes.by_variant()) == {"champion"}
    assert abs(routes.shadow_mask.mean() - 0.2) < 0.02
    first = routes[int(routes.shadow_positions()[0])]
    assert first.shadows == ("m:2.0.0", "m:2.1.0")
    # The shadow sample is sticky too, and not the same keys as a serving split would take.
    again = Router(RolloutState(model="m", spec=spec)).route_batch(KEYS)
    assert np.array_equal(routes.shadow_mask, again.shadow_mask)
    with pytest.raises(ValidationError, match="names no shadow"):
        Shadow(id="sh", champion="m:1.0.0")


def test_canary_can_carry_shadows_too() -> None:
    router = Router(_canary(0, shadows=["churn:2.0.0-rc1"]))
    assert router.route("user-1").shadows == ("churn:2.0.0-rc1",)


def test_multi_model_rules_on_device_and_country() -> None:
    spec = parse_rollout_spec(
        {
            "strategy": "multi_model",
            "id": "segments",
            "rules": [
                {
                    "when": [{"attribute": "device", "op": "eq", "value": "ios"}],
                    "variant": {"name": "ios", "model": "m-ios:1.0.0"},
                },
                {
                    "when": [{"attribute": "country", "op": "in", "value": ["DE", "AT"]}],
                    "variant": {"name": "dach", "model": "m-dach:2.0.0"},
                },
            ],
            "default": {"name": "global", "model": "m:1.0.0"},
        }
    )
    router = Router(RolloutState(model="m", spec=spec))
    events = [
        {"device": "ios", "country": "DE"},
        {"device": "android", "country": "AT"},
        {"device": "web", "country": "US"},
        None,
    ]
    routes = router.route_batch(["a", "b", "c", "d"], events)
    assert [r.model for r in routes] == ["m-ios:1.0.0", "m-dach:2.0.0", "m:1.0.0", "m:1.0.0"]
    assert router.route("x", {"device": "ios"}).variant == "ios"
    with pytest.raises(ValueError, match="2 keys but 1 attribute rows"):
        router.route_batch(["a", "b"], [{}])


def test_bandit_weights_split_traffic() -> None:
    arms = [Variant(name="a", model="m:1.0.0"), Variant(name="b", model="m:1.1.0")]
    spec = Bandit(id="bandit-1", arms=arms).with_weights({"a": 0.1, "b": 0.9})
    assert spec.current_weights() == pytest.approx({"a": 10.0, "b": 90.0})
    groups = Router(RolloutState(model="m", spec=spec)).route_batch(KEYS).by_variant()
    assert abs(groups["b"].size / len(KEYS) - 0.9) < 0.02
    # The floor keeps some exploration alive.
    floored = spec.with_weights({"a": 0.0, "b": 1.0})
    assert floored.current_weights() == pytest.approx({"a": 1.0, "b": 99.0})
    three = Bandit(id="b3", arms=[*arms, Variant(name="c", model="m:1.2.0")], min_weight=5)
    spread = three.with_weights({"a": 0.0, "b": 0.01, "c": 0.99}).current_weights()
    assert spread == pytest.approx({"a": 5.0, "b": 5.0, "c": 90.0})
    with pytest.raises(ValueError, match="must be non-negative"):
        spec.with_weights({"a": 1.0})


def test_invalid_specs_are_refused_with_the_field_named() -> None:
    with pytest.raises(ValidationError, match="strictly increase"):
        _canary(0, steps=[5, 50, 25])
    with pytest.raises(ValidationError, match="past the"):
        _canary(4)
    with pytest.raises(ValidationError, match="Extra inputs"):
        _canary(0, surprise=True)
    with pytest.raises(ValidationError, match="add up to 100"):
        parse_rollout_spec(
            {
                "strategy": "ab",
                "id": "e",
                "split": [
                    {"name": "a", "model": "m:1", "weight": 50},
                    {"name": "b", "model": "m:2", "weight": 40},
                ],
            }
        )
    with pytest.raises(ValidationError, match="strategy"):
        parse_rollout_spec({"strategy": "yolo", "id": "e"})
    with pytest.raises(ValidationError, match="pattern"):
        _canary(0, candidate="no-version")
    with pytest.raises(ValidationError, match="no variant"):
        RolloutState.model_validate({**_canary().model_dump(), "winner": "ghost"})


def test_parse_model_ref() -> None:
    assert parse_model_ref("churn:1.2.0") == ("churn", "1.2.0")
    with pytest.raises(ValueError, match="name:version"):
        parse_model_ref("churn")


def test_router_refuses_to_split_a_strategy_without_a_split() -> None:
    spec = Shadow(id="sh", champion="m:1.0.0", shadows=("m:2.0.0",))
    router = Router(RolloutState(model="m", spec=spec))
    with pytest.raises(RolloutError, match="no traffic split"):
        router._split()
