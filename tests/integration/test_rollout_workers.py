"""Rollouts served by real inference workers: a real broker, registry, snapshot and worker.

The worker polls the rollout store through :class:`RolloutSource` (its routing source), so
these tests check what the control plane promises end to end: A/B assignments survive a
worker restart, shadow outputs stay out of ``predictions``, and a bad canary rolled back by
the controller sends traffic back to the champion within seconds with no record lost.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaProducer

from lakecast.config import KafkaSettings
from lakecast.features.spec import FEATURE_COLUMNS
from lakecast.kafka.dlq import decode_dead_letter
from lakecast.kafka.serde import decode_prediction
from lakecast.registry import Registry, Signature
from lakecast.rollout.controller import ControllerSettings, RolloutController
from lakecast.rollout.evidence import TopicTail
from lakecast.rollout.journal import RolloutJournal
from lakecast.rollout.source import RolloutSource
from lakecast.rollout.store import RolloutStore
from lakecast.rollout.strategies import ABTest, Canary, RolloutState, Shadow
from lakecast.serving.testing import (
    committed_total,
    event_payload,
    produce,
    read_committed,
    register_model,
    train_model,
    wait_for,
    write_snapshot,
)
from tests.integration.worker_fixtures import ThreadedWorker

MODEL = "purchase"
TIMEOUT_S = 60.0
USERS = 80


class Lake:
    def __init__(self, root: Path) -> None:
        self.registry = str(root / "registry")
        self.snapshot = str(root / "entity_features")
        register_model(self.registry, seed=0)  # purchase 1.0.0, champion
        write_snapshot(self.snapshot)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path)


@pytest.fixture
def topics(topic_factory: Callable[..., str]) -> dict[str, str]:
    return {
        "events": topic_factory("events", 2),
        "predictions": topic_factory("predictions", 2),
        "dlq": topic_factory("dlq"),
        "metrics": topic_factory("metrics"),
    }


def rollout_worker(
    bootstrap: str, lake: Lake, topics: dict[str, str], group: str
) -> ThreadedWorker:
    """A worker that follows the rollout store, serving in a thread."""
    routing = RolloutSource(lake.registry, MODEL, interval_s=0.2)
    return ThreadedWorker(
        bootstrap, lake, topics, group, reference=f"{MODEL}@champion", routing=routing
    )


@pytest.fixture
def serve(
    bootstrap: str, lake: Lake, topics: dict[str, str], consumer_group: str
) -> Iterator[Callable[[], ThreadedWorker]]:
    started: list[ThreadedWorker] = []

    def start() -> ThreadedWorker:
        worker = rollout_worker(bootstrap, lake, topics, consumer_group)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop_event.set()
        worker.thread.join(TIMEOUT_S)


def _start(lake: Lake, state: RolloutState, controller: ControllerSettings | None = None) -> None:
    settings = (controller or ControllerSettings()).model_dump(mode="json")
    RolloutStore(lake.registry).start(state, settings, who="test")


def _serve_events(
    bootstrap: str, topics: dict[str, str], group: str, start: int, count: int
) -> None:
    payloads = (event_payload(i, users=USERS) for i in range(start, start + count))
    produce(bootstrap, topics["events"], payloads)
    wait_for(
        lambda: committed_total(bootstrap, group, topics["events"]) >= start + count,
        timeout_s=TIMEOUT_S,
        what=f"the worker to commit {start + count} events",
    )


def _outputs(bootstrap: str, topics: dict[str, str], produced: int) -> tuple[list, list]:
    predictions = [
        decode_prediction(r.value)
        for r in read_committed(bootstrap, topics["predictions"], at_least=1, quiet_s=1.5)
    ]
    dead = [
        decode_dead_letter(r.value)
        for r in read_committed(bootstrap, topics["dlq"], at_least=0, quiet_s=0.5)
    ]
    return predictions, dead


def _assert_each_event_once(predictions: list, dead: list, produced: int) -> None:
    served = [p.event_id for p in predictions if p.variant != "shadow"]
    assert len(served) == len(set(served)), "an event was predicted twice"
    assert len(served) + len(dead) == produced, "a record was lost"


def test_ab_assignment_is_sticky_across_worker_restarts(
    bootstrap: str,
    lake: Lake,
    topics: dict[str, str],
    consumer_group: str,
    serve: Callable[[], ThreadedWorker],
) -> None:
    register_model(lake.registry, seed=1, alias=None)  # 1.1.0
    spec = ABTest(
        id="exp-1",
        split=[
            {"name": "control", "model": f"{MODEL}:1.0.0", "weight": 50},
            {"name": "treatment", "model": f"{MODEL}:1.1.0", "weight": 50},
        ],
    )
    _start(lake, RolloutState(model=MODEL, spec=spec))
    first = serve()
    _serve_events(bootstrap, topics, consumer_group, 0, 300)
    first.stop()
    second = serve()
    _serve_events(bootstrap, topics, consumer_group, 300, 300)
    second.stop()
    predictions, dead = _outputs(bootstrap, topics, 600)
    _assert_each_event_once(predictions, dead, 600)
    variants_of: dict[str, set[str]] = defaultdict(set)
    for prediction in predictions:
        variants_of[prediction.user_id].add(prediction.variant)
        assert prediction.experiment == "exp-1"
        expected = "1.0.0" if prediction.variant == "control" else "1.1.0"
        assert prediction.model.version == expected
    assert all(len(variants) == 1 for variants in variants_of.values()), variants_of
    assert {v for variants in variants_of.values() for v in variants} == {"control", "treatment"}


def test_shadow_outputs_never_reach_predictions(
    bootstrap: str,
    lake: Lake,
    topics: dict[str, str],
    consumer_group: str,
    serve: Callable[[], ThreadedWorker],
) -> None:
    register_model(lake.registry, seed=1, alias=None)  # 1.1.0
    spec = Shadow(id="shadow-1", champion=f"{MODEL}:1.0.0", shadows=(f"{MODEL}:1.1.0",))
    _start(lake, RolloutState(model=MODEL, spec=spec))
    worker = serve()
    _serve_events(bootstrap, topics, consumer_group, 0, 200)
    worker.stop()
    predictions, dead = _outputs(bootstrap, topics, 200)
    assert predictions
    assert {p.variant for p in predictions} == {"champion"}
    assert {p.model.version for p in predictions} == {"1.0.0"}
    _assert_each_event_once(predictions, dead, 200)


def test_bad_canary_is_rolled_back_and_traffic_returns_to_the_champion_losing_nothing(
    bootstrap: str,
    lake: Lake,
    topics: dict[str, str],
    consumer_group: str,
    serve: Callable[[], ThreadedWorker],
) -> None:
    registry = Registry(lake.registry)
    shifted = train_model(seed=0)
    shifted.intercept_ = shifted.intercept_ + 3.0  # the same model, its scores pushed up
    candidate = registry.register(
        MODEL, shifted, signature=Signature.of(list(FEATURE_COLUMNS), dtype="float64")
    )
    spec = Canary(
        id="canary-bad",
        champion=f"{MODEL}:1.0.0",
        candidate=candidate.ref,
        steps=(50.0, 100.0),
    )
    controller_settings = ControllerSettings(
        step_seconds=3.0, settle_seconds=0.5, analysis={"min_samples": 30}
    )
    _start(lake, RolloutState(model=MODEL, spec=spec), controller_settings)
    worker = serve()
    sent_at: list[float] = []
    stop = threading.Event()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)

    def feed() -> None:
        while not stop.is_set():
            for _ in range(20):
                key, value = event_payload(len(sent_at), users=USERS)
                producer.send(topics["events"], key=key, value=value)
                sent_at.append(time.monotonic())
            producer.flush()
            stop.wait(0.1)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    metrics = TopicTail(KafkaSettings(bootstrap_servers=bootstrap), topics["metrics"])
    controller = RolloutController(
        MODEL,
        RolloutStore(lake.registry),
        registry,
        RolloutJournal(registry, None),
        metrics=metrics,
    )
    try:
        final = controller.run(timeout_s=TIMEOUT_S)
        rolled_back_at = time.monotonic()
        stop.wait(4.0)
    finally:
        stop.set()
        feeder.join(10)
        producer.close()
        metrics.close()
    produced = len(sent_at)
    wait_for(
        lambda: committed_total(bootstrap, consumer_group, topics["events"]) >= produced,
        timeout_s=TIMEOUT_S,
        what=f"the worker to commit {produced} events",
    )
    worker.stop()
    assert final is not None
    assert final.status == "rolled_back"
    verdicts = [d.verdict for d in controller.decisions if d.verdict is not None]
    assert verdicts[0].verdict == "fail"
    assert "score" in {m.name for m in verdicts[0].metrics if m.classification == "high"}
    predictions, dead = _outputs(bootstrap, topics, produced)
    _assert_each_event_once(predictions, dead, produced)
    variant_of = {p.event_id: p.variant for p in predictions}
    assert "candidate" in set(variant_of.values())
    late = [
        variant_of[f"e-{i}"]
        for i, at in enumerate(sent_at)
        if at > rolled_back_at + 2.0 and f"e-{i}" in variant_of
    ]
    assert late, "no events were served after the rollback"
    assert set(late) == {"champion"}
    assert np.isfinite([p.score for p in predictions]).all()
