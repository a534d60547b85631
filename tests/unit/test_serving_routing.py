"""The worker's batch router: a new rollout is followed only once its models are loaded."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from lakecast.rollout.strategies import RolloutState
from lakecast.serving.routing import BatchRouter, StaticRouting

USERS = [f"user-{i}" for i in range(400)]


@dataclass
class SlowModels:
    """A model source stand-in whose version loads block until ``release`` is set."""

    release: threading.Event = field(default_factory=threading.Event)
    loaded: dict[str, Any] = field(default_factory=dict)
    loads_on: list[str] = field(default_factory=list)  # thread names that loaded

    def current(self) -> str:
        return "churn:1.0.0"

    def is_loaded(self, reference: str) -> bool:
        return reference in self.loaded

    def model(self, reference: str) -> Any:
        if reference not in self.loaded:
            self.loads_on.append(threading.current_thread().name)
            self.release.wait(10)
            self.loaded[reference] = reference
        return self.loaded[reference]


def _canary(percent_step: int = 3) -> RolloutState:
    spec = {
        "strategy": "canary",
        "id": "churn-canary-7",
        "champion": "churn:1.0.0",
        "candidate": "churn:1.1.0",
        "step_index": percent_step,  # 100 %: every event to the candidate
    }
    return RolloutState.model_validate({"model": "churn", "spec": spec})


def _served_by(router: BatchRouter) -> set[str]:
    return {group.model for group in router.plan(USERS).serving}


def test_a_new_candidate_is_loaded_in_the_background_and_followed_once_loaded() -> None:
    models = SlowModels(loaded={"churn:1.0.0": "churn:1.0.0"})
    router = BatchRouter(models, StaticRouting(_canary()), background_loading=True)  # type: ignore[arg-type]

    started = time.monotonic()
    assert _served_by(router) == {"churn:1.0.0"}  # the champion serves while 1.1.0 loads
    assert time.monotonic() - started < 1.0, "the batch must not wait for the load"
    models.release.set()
    deadline = time.monotonic() + 10
    while _served_by(router) != {"churn:1.1.0"} and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _served_by(router) == {"churn:1.1.0"}
    assert models.loads_on == ["model-preload"]


def test_start_loads_the_current_rollouts_models_before_the_first_batch() -> None:
    models = SlowModels()
    models.release.set()
    router = BatchRouter(models, StaticRouting(_canary()), background_loading=True)  # type: ignore[arg-type]
    router.start()
    assert set(models.loaded) == {"churn:1.0.0", "churn:1.1.0"}
    assert _served_by(router) == {"churn:1.1.0"}


def test_without_background_loading_the_first_batch_loads_what_it_needs() -> None:
    models = SlowModels()
    models.release.set()
    router = BatchRouter(models, StaticRouting(_canary()))  # type: ignore[arg-type]
    assert _served_by(router) == {"churn:1.1.0"}
    assert models.loads_on == [threading.current_thread().name]
