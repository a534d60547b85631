"""Rollouts served by real inference workers: a real broker, registry, snapshot and worker.

The worker polls the rollout store through :class:`RolloutSource` (its routing source), so
these tests check what the control plane promises end to end: A/B assignments survive a
worker restart, shadow outputs stay out of ``predictions``, a good canary passes every step
and becomes champion, and a bad one (its scores shifted, or right but slow) is rolled back
at its first analysis, traffic back on the champion within seconds and no record lost.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaProducer

from lakecast.config import KafkaSettings
from lakecast.features.spec import FEATURE_COLUMNS
from lakecast.kafka.dlq import decode_dead_letter
from lakecast.kafka.serde import decode_prediction
from lakecast.registry import Registry, Signature
from lakecast.rollout.analysis import CanaryVerdict
from lakecast.rollout.controller import (
    DEFAULT_METRICS,
    ControllerSettings,
    Decision,
    RolloutController,
)
from lakecast.rollout.evidence import MODEL_LATENCY, SCORE, TopicTail
from lakecast.rollout.journal import RolloutJournal
from lakecast.rollout.source import RolloutSource
from lakecast.rollout.store import RolloutStore
from lakecast.rollout.strategies import ABTest, Canary, RolloutState, Shadow
from lakecast.testing.clock import wait_for
from lakecast.testing.events import event_payload
from lakecast.testing.features import write_snapshot
from lakecast.testing.kafka import committed_total, produce, read_committed
from lakecast.testing.models import register_model, slow_twin, train_model
from tests.integration.worker_fixtures import ThreadedWorker

MODEL = "purchase"
TIMEOUT_S = 60.0
CANARY_TIMEOUT_S = 60.0
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


@dataclass
class CanaryRun:
    """What a canary served by a real worker left: its end state, decisions and outputs."""

    final: RolloutState | None
    decisions: list[Decision]
    ended_at: float  # monotonic
    sent_at: list[float]  # monotonic, by event number
    predictions: list
    dead: list

    def verdicts(self) -> list[CanaryVerdict]:
        """The analyses, in order (the decisions that acted on one carry it too)."""
        return [d.verdict for d in self.decisions if d.event == "verdict" and d.verdict]

    def served_after(self, delay_s: float) -> set[tuple[str, str]]:
        """(variant, version) of the events sent ``delay_s`` after the rollout ended."""
        served = {p.event_id: (p.variant, p.model.version) for p in self.predictions}
        late = [
            served[f"e-{i}"]
            for i, at in enumerate(self.sent_at)
            if at > self.ended_at + delay_s and f"e-{i}" in served
        ]
        assert late, "no events were served after the rollout ended"
        return set(late)


def _run_canary(
    bootstrap: str,
    lake: Lake,
    topics: dict[str, str],
    group: str,
    serve: Callable[[], ThreadedWorker],
    spec: Canary,
    settings: ControllerSettings,
    users: int = USERS,
) -> CanaryRun:
    """Serve a steady stream while the controller drives ``spec`` to its end, then 4 s more.

    The split is by user: with few users, each variant's cohort has its own mix of users
    (and so of scores), which an analysis rightly reports; ``users`` sets how many.
    """
    registry = Registry(lake.registry)
    _start(lake, RolloutState(model=MODEL, spec=spec), settings)
    worker = serve()
    sent_at: list[float] = []
    stop = threading.Event()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)

    def feed() -> None:
        while not stop.is_set():
            for _ in range(20):
                key, value = event_payload(len(sent_at), users=users)
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
        final = controller.run(timeout_s=CANARY_TIMEOUT_S)
        ended_at = time.monotonic()
        stop.wait(4.0)
    finally:
        stop.set()
        feeder.join(10)
        producer.close()
        metrics.close()
    produced = len(sent_at)
    wait_for(
        lambda: committed_total(bootstrap, group, topics["events"]) >= produced,
        timeout_s=TIMEOUT_S,
        what=f"the worker to commit {produced} events",
    )
    worker.stop()
    predictions, dead = _outputs(bootstrap, topics, produced)
    _assert_each_event_once(predictions, dead, produced)
    return CanaryRun(final, controller.decisions, ended_at, sent_at, predictions, dead)


def _classified(verdict: CanaryVerdict, *classes: str) -> set[str]:
    return {m.name for m in verdict.metrics if m.classification in classes}


def test_good_canary_goes_through_every_step_and_becomes_champion(
    bootstrap: str,
    lake: Lake,
    topics: dict[str, str],
    consumer_group: str,
    serve: Callable[[], ThreadedWorker],
) -> None:
    candidate = register_model(lake.registry, seed=0, alias=None)  # a retrain: same behaviour
    spec = Canary(
        id="canary-good",
        champion=f"{MODEL}:1.0.0",
        candidate=candidate.ref,
        steps=(25.0, 50.0, 100.0),
    )
    settings = ControllerSettings(
        step_seconds=4.0, settle_seconds=0.5, analysis={"min_samples": 20}
    )
    # Enough users that the 25 % cohort scores like the rest (with 80, one run in a few
    # differed by 0.05 in score at p < 0.02: a true difference of cohorts, not of models).
    run = _run_canary(bootstrap, lake, topics, consumer_group, serve, spec, settings, users=5_000)
    assert run.final is not None
    assert run.final.status == "promoted", [v.reasons for v in run.verdicts()]
    events = [d.event for d in run.decisions]
    # One passing analysis per step below 100 %, then the promotion; no hold, no rollback.
    assert events == ["verdict", "advanced", "verdict", "promoted"], events
    assert [v.verdict for v in run.verdicts()] == ["pass", "pass"]
    assert [d.state.spec.percent for d in run.decisions if d.event != "verdict"] == [50.0, 100.0]
    record, _ = Registry(lake.registry).load(f"{MODEL}@champion")
    assert record.version == candidate.version
    assert {p.variant for p in run.predictions} == {"champion", "candidate"}
    # Promoted: the winner serves everything within seconds (still labelled with its variant
    # in this rollout, which has ended), and it is the registry's champion for the next one.
    assert run.served_after(2.0) == {("candidate", candidate.version)}


def test_bad_canary_adding_latency_is_rolled_back_at_its_first_analysis(
    bootstrap: str,
    lake: Lake,
    topics: dict[str, str],
    consumer_group: str,
    serve: Callable[[], ThreadedWorker],
) -> None:
    # The same scores from a soft-voting ensemble of 300 copies of the champion: a heavier
    # model that is right but slow (300 predict calls per batch instead of one).
    registry = Registry(lake.registry)
    champion, _ = registry.load(f"{MODEL}:1.0.0")
    heavy = registry.register(
        MODEL, slow_twin(train_model(seed=0), copies=300), signature=champion.signature
    )
    spec = Canary(id="canary-slow", champion=champion.ref, candidate=heavy.ref, steps=(50.0, 100.0))
    # The operator of this model treats model latency as critical (it is not by default).
    metrics = tuple(
        m.model_copy(update={"critical": True}) if m.name == MODEL_LATENCY else m
        for m in DEFAULT_METRICS
    )
    settings = ControllerSettings(
        step_seconds=3.0, settle_seconds=0.5, analysis={"min_samples": 20}, metrics=metrics
    )
    run = _run_canary(bootstrap, lake, topics, consumer_group, serve, spec, settings)
    assert run.final is not None
    assert run.final.status == "rolled_back"
    first = run.verdicts()[0]
    assert first.verdict == "fail"
    assert MODEL_LATENCY in _classified(first, "high"), first.reasons
    assert SCORE in _classified(first, "pass"), first.reasons
    assert run.served_after(2.0) == {("champion", "1.0.0")}


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
    settings = ControllerSettings(
        step_seconds=3.0, settle_seconds=0.5, analysis={"min_samples": 30}
    )
    run = _run_canary(bootstrap, lake, topics, consumer_group, serve, spec, settings)
    assert run.final is not None
    assert run.final.status == "rolled_back"
    first = run.verdicts()[0]
    assert first.verdict == "fail"
    assert SCORE in _classified(first, "high")
    assert "candidate" in {p.variant for p in run.predictions}
    assert run.served_after(2.0) == {("champion", "1.0.0")}
    assert np.isfinite([p.score for p in run.predictions]).all()
