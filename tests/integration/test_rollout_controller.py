"""The rollout control plane on a real broker and real Delta tables.

A synthetic fleet (see rollout_fixtures) sends ``kind=sample`` records for the routing the
stored rollout state asks for; the controller analyses them step by step, promotes a good
candidate and rolls a bad one back at its first analysis; every verdict lands in the metrics
topic and the registry's audit log. Deploys are refused clearly when they should be.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaProducer
from typer.testing import CliRunner

from lakecast.cli.main import app
from lakecast.config import KafkaSettings, TopicNames
from lakecast.errors import RolloutError
from lakecast.registry import Registry
from lakecast.rollout.controller import RolloutController
from lakecast.rollout.deploy import DeployRequest, rollback_rollout, start_rollout
from lakecast.rollout.evidence import TopicTail
from lakecast.rollout.journal import KafkaMetricsSink, RolloutJournal, audit_decisions
from lakecast.rollout.router import Router
from lakecast.rollout.store import RolloutStore
from lakecast.rollout.strategies import Bandit
from tests.integration.rollout_fixtures import (
    MODEL,
    Behaviour,
    SyntheticFleet,
    complete_card,
    read_metrics,
    register_version,
    registry_with_champion,
)

FAST = {
    "step_seconds": 1.5,
    "settle_seconds": 0.3,
    "max_holds": 2,
    "analysis": {"min_samples": 30},
}


@pytest.fixture
def kafka(bootstrap: str, topic_factory: Callable[..., str]) -> KafkaSettings:
    topics = TopicNames(
        events=topic_factory("events"),
        predictions=topic_factory("predictions"),
        metrics=topic_factory("metrics"),
    )
    return KafkaSettings(bootstrap_servers=bootstrap, topics=topics)


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return registry_with_champion(tmp_path / "registry")


@pytest.fixture
def journal(registry: Registry, kafka: KafkaSettings) -> Iterator[RolloutJournal]:
    sink = KafkaMetricsSink(kafka, source="rollout-test")
    yield RolloutJournal(registry, sink, who="test")
    sink.close()


def _controller(
    registry: Registry, journal: RolloutJournal, kafka: KafkaSettings, **tails: TopicTail
) -> RolloutController:
    metrics = TopicTail(kafka, kafka.topics.metrics)
    return RolloutController(
        MODEL, RolloutStore(registry.root), registry, journal, metrics=metrics, **tails
    )


def _canary(registry: Registry, journal: RolloutJournal, version: str = "1.1.0") -> None:
    request = DeployRequest(
        MODEL, version, "canary", steps=(5.0, 25.0, 50.0, 100.0), controller=FAST
    )
    start_rollout(registry, RolloutStore(registry.root), request, journal, who="test")


def test_good_candidate_goes_through_every_step_and_becomes_champion(
    registry: Registry, journal: RolloutJournal, kafka: KafkaSettings
) -> None:
    _canary(registry, journal)
    controller = _controller(registry, journal, kafka)
    with SyntheticFleet(kafka.bootstrap_servers, kafka.topics.metrics, registry.root, {}) as fleet:
        final = controller.run(timeout_s=90)
    assert final is not None
    assert (final.status, final.spec.percent) == ("promoted", 100.0)  # type: ignore[union-attr]
    assert registry.resolve(f"{MODEL}@champion").version == "1.1.0"
    verdicts = [d.verdict for d in controller.decisions if d.event == "verdict"]
    assert [v.verdict for v in verdicts if v is not None] == ["pass", "pass", "pass"]
    assert [d.event for d in controller.decisions if d.event != "verdict"] == [
        "advanced",
        "advanced",
        "promoted",
    ]
    assert fleet.routed["candidate"] > 0
    # Every verdict is on the metrics topic, with its per-metric reasons ...
    records = read_metrics(kafka.bootstrap_servers, kafka.topics.metrics, "rollout")
    on_topic = [r for r in records if r["event"] == "verdict"]
    assert [r["percent"] for r in on_topic] == [5.0, 25.0, 50.0]
    for record in on_topic:
        names = {m["name"] for m in record["verdict"]["metrics"]}
        assert names == {"latency_ms", "model_latency_ms", "error_rate", "score"}
        assert all(m["reason"] for m in record["verdict"]["metrics"])
    assert [r["event"] for r in records][-1] == "promoted"
    # ... and in the registry's audit log, next to the champion's move.
    audited = audit_decisions(registry, MODEL)
    assert [d["verdict"]["verdict"] for d in audited if d["event"] == "verdict"] == ["pass"] * 3
    moves = [e for e in registry.audit(MODEL) if e.alias == "champion"]
    assert [(e.version, e.previous_version) for e in moves][-1] == ("1.1.0", "1.0.0")


@pytest.mark.parametrize(
    ("behaviour", "failing"),
    [
        (Behaviour(latency_ms=30.0, model_latency_ms=20.0), "latency_ms"),
        (Behaviour(score_shift=0.2), "score"),
    ],
    ids=["added-latency", "shifted-scores"],
)
def test_bad_candidate_is_rolled_back_at_its_first_analysis(
    registry: Registry,
    journal: RolloutJournal,
    kafka: KafkaSettings,
    behaviour: Behaviour,
    failing: str,
) -> None:
    _canary(registry, journal)
    controller = _controller(registry, journal, kafka)
    behaviours = {"candidate": behaviour}
    with SyntheticFleet(kafka.bootstrap_servers, kafka.topics.metrics, registry.root, behaviours):
        final = controller.run(timeout_s=60)
    assert final is not None
    assert final.status == "rolled_back"
    verdicts = [d.verdict for d in controller.decisions if d.verdict is not None]
    first = verdicts[0]
    assert first.verdict == "fail"
    assert {d.event for d in controller.decisions} == {"verdict", "rolled_back"}
    bad = {m.name for m in first.metrics if m.classification in ("high", "low")}
    assert failing in bad
    # Traffic is back on the champion, and the champion never moved.
    routes = Router(final).route_batch([f"u{i}" for i in range(1_000)])
    assert set(routes.by_variant()) == {"champion"}
    assert registry.resolve(f"{MODEL}@champion").version == "1.0.0"
    records = read_metrics(kafka.bootstrap_servers, kafka.topics.metrics, "rollout")
    verdict = next(r for r in records if r["event"] == "verdict")
    assert verdict["verdict"]["verdict"] == "fail"
    assert any(failing in reason for reason in verdict["reasons"])
    audited = [d for d in audit_decisions(registry, MODEL) if d["event"] == "rolled_back"]
    assert len(audited) == 1
    assert any(failing in reason for reason in audited[0]["reasons"])


def test_blue_green_switch_and_rollback(
    registry: Registry, journal: RolloutJournal, kafka: KafkaSettings
) -> None:
    store = RolloutStore(registry.root)
    users = [f"u{i}" for i in range(500)]
    record, _ = start_rollout(
        registry, store, DeployRequest(MODEL, "1.1.0", "blue_green"), journal, who="test"
    )
    assert registry.resolve(f"{MODEL}@champion").version == "1.1.0"
    switched = Router(record.state).route_batch(users)
    assert {route.model for route in switched} == {f"{MODEL}:1.1.0"}
    back = rollback_rollout(registry, store, MODEL, journal, who="test", reason="errors up")
    assert back.state.status == "rolled_back"
    assert registry.resolve(f"{MODEL}@champion").version == "1.0.0"
    assert {route.model for route in Router(back.state).route_batch(users)} == {f"{MODEL}:1.0.0"}
    with pytest.raises(RolloutError, match="rolled back already"):
        rollback_rollout(registry, store, MODEL, journal, who="test")
    events = [
        r["event"] for r in read_metrics(kafka.bootstrap_servers, kafka.topics.metrics, "rollout")
    ]
    assert events == ["started", "rolled_back"]
    assert [d["event"] for d in audit_decisions(registry, MODEL)] == ["started", "rolled_back"]


def _refused(registry: Registry, journal: RolloutJournal, version: str) -> str:
    store = RolloutStore(registry.root)
    with pytest.raises(RolloutError) as caught:
        start_rollout(registry, store, DeployRequest(MODEL, version, "canary"), journal, who="t")
    assert store.current(MODEL) is None  # nothing was started
    return str(caught.value)


def test_unknown_version_is_refused(registry: Registry, journal: RolloutJournal) -> None:
    message = _refused(registry, journal, "9.9.9")
    assert "9.9.9" in message
    assert "1.1.0" in message  # the versions that do exist


def test_incompatible_signature_is_refused(registry: Registry, journal: RolloutJournal) -> None:
    broken = register_version(registry, columns=("a", "b", "d"), seed=2)
    assert broken.version == "2.0.0"
    message = _refused(registry, journal, broken.version)
    assert "signature_compatible" in message
    assert "'d'" in message


@pytest.mark.parametrize(
    ("kwargs", "gate", "by"),
    [
        ({"auc": 0.70}, "holdout_metric", "improvement -0.1"),
        ({"batch_latency_ms": 15.0}, "batch_latency", "+50.0%"),
        ({"card": complete_card().__class__(model_details="only this")}, "model_card", "missing"),
    ],
    ids=["worse-auc", "slower-batch", "incomplete-card"],
)
def test_failing_gate_is_refused_naming_the_gate_and_by_how_much(
    registry: Registry,
    journal: RolloutJournal,
    kafka: KafkaSettings,
    kwargs: dict,
    gate: str,
    by: str,
) -> None:
    version = register_version(registry, seed=3, **kwargs).version
    message = _refused(registry, journal, version)
    assert gate in message
    assert by in message
    refused = read_metrics(kafka.bootstrap_servers, kafka.topics.metrics, "rollout")
    assert [r["event"] for r in refused] == ["refused"]
    assert any(gate in reason for reason in refused[0]["reasons"])


def test_bandit_moves_traffic_to_the_version_that_earns_more(
    registry: Registry, journal: RolloutJournal, kafka: KafkaSettings
) -> None:
    controller_settings = {"bandit": {"update_seconds": 0.3, "reward_window_s": 60}}
    request = DeployRequest(MODEL, "1.1.0", "bandit", controller=controller_settings)
    store = RolloutStore(registry.root)
    start_rollout(registry, store, request, journal, who="test")
    tails = {
        "predictions": TopicTail(kafka, kafka.topics.predictions),
        "events": TopicTail(kafka, kafka.topics.events),
    }
    controller = _controller(registry, journal, kafka, **tails)
    stop = threading.Event()
    driver = threading.Thread(target=controller.run, kwargs={"stop": stop, "until_done": False})
    driver.start()
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    conversion = {"champion": 0.05, "candidate": 0.30}
    rng = np.random.default_rng(7)
    try:
        for _ in range(40):
            state = store.current(MODEL)
            assert state is not None
            now = datetime.now(UTC)
            users = [f"user-{uuid.uuid4().hex[:8]}" for _ in range(100)]
            for route, user in zip(Router(state).route_batch(users), users, strict=True):
                prediction = {
                    "event_id": uuid.uuid4().hex,
                    "user_id": user,
                    "ts": now.isoformat(),
                    "variant": route.variant,
                    "experiment": route.experiment,
                }
                producer.send(kafka.topics.predictions, json.dumps(prediction).encode())
                if rng.random() < conversion[route.variant]:
                    purchase = {
                        "user_id": user,
                        "event_type": "purchase",
                        "ts": (now + timedelta(seconds=5)).isoformat(),
                    }
                    producer.send(kafka.topics.events, json.dumps(purchase).encode())
            producer.flush()
            stop.wait(0.1)
    finally:
        stop.set()
        driver.join(timeout=30)
        producer.close()
        for tail in tails.values():
            tail.close()
    final = store.current(MODEL)
    assert final is not None
    assert isinstance(final.spec, Bandit)
    assert final.spec.current_weights()["candidate"] > 80.0
    weights = [d for d in controller.decisions if d.event == "weights"]
    assert weights
    audited = [d for d in audit_decisions(registry, MODEL) if d["event"] == "weights"]
    assert len(audited) == len(weights)
    assert audited[-1]["rewards"]["candidate"] > audited[-1]["rewards"]["champion"]


def test_cli_deploy_status_and_rollback(registry: Registry, kafka: KafkaSettings) -> None:
    runner = CliRunner()
    common = [
        "deploy",
        "--root",
        registry.root,
        "--bootstrap",
        kafka.bootstrap_servers,
        "--metrics-topic",
        kafka.topics.metrics,
    ]
    result = runner.invoke(app, [*common, MODEL, "1.1.0", "--strategy", "ab", "--split", "30"])
    assert result.exit_code == 0, result.output
    assert "ab rollout 'ab-1.1.0' of 1.1.0 started" in result.output
    result = runner.invoke(app, [*common, "status", MODEL, "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["state"]["status"] == "running"
    assert [v["weight"] for v in status["state"]["spec"]["split"]] == [70.0, 30.0]
    assert [d["event"] for d in status["decisions"]] == ["started"]
    result = runner.invoke(app, [*common, MODEL, "1.1.0", "--strategy", "canary"])
    assert result.exit_code != 0
    assert "still running" in str(result.exception)
    result = runner.invoke(app, [*common, "rollback", MODEL, "--reason", "done"])
    assert result.exit_code == 0, result.output
    assert f"all traffic to {MODEL}:1.0.0" in result.output
    events = [
        r["event"] for r in read_metrics(kafka.bootstrap_servers, kafka.topics.metrics, "rollout")
    ]
    assert events == ["started", "rolled_back"]
