"""The inference worker against a real broker, a real registry and a real snapshot table.

Each test produces uuid-named events, runs :class:`InferenceWorker` in a thread (the same
``run`` a worker process runs), waits until the group committed every input offset, stops it
and reads the outputs with ``read_committed``.
"""

from __future__ import annotations

import base64
import math
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from threadpoolctl import threadpool_info

from lakecast.features.online import online_feature_matrix
from lakecast.features.snapshot import load_snapshot
from lakecast.features.spec import FEATURES_VERSION
from lakecast.kafka.dlq import decode_dead_letter
from lakecast.kafka.serde import decode_metric, decode_prediction
from lakecast.models.predictor import Features, Predictor
from lakecast.registry import Registry
from lakecast.registry.records import ModelVersion
from lakecast.testing.events import event_payload, event_value, make_events
from lakecast.testing.features import write_snapshot
from lakecast.testing.kafka import produce, read_committed
from lakecast.testing.models import register_model
from lakecast.testing.predictors import WrappedPredictor, failing_loader
from tests.integration.worker_fixtures import (
    MAX_RECORD_BYTES,
    TIMEOUT_S,
    Lake,
    ThreadedWorker,
    drain,
    served_lake,
    worker_topics,
)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """A registry with ``purchase@champion`` (1.0.0) and an entity snapshot, once per module."""
    return served_lake(tmp_path_factory.mktemp("served"))


@pytest.fixture
def topics(topic_factory: Callable[..., str]) -> dict[str, str]:
    return worker_topics(topic_factory)


@pytest.fixture
def serve(
    bootstrap: str, lake: Lake, topics: dict[str, str], consumer_group: str
) -> Iterator[Callable[..., ThreadedWorker]]:
    started: list[ThreadedWorker] = []

    def start(**options: Any) -> ThreadedWorker:
        worker = ThreadedWorker(bootstrap, lake, topics, consumer_group, **options)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop_event.set()
        worker.thread.join(TIMEOUT_S)


def expected_scores(lake: Lake, values: list[dict[str, Any]], reference: str) -> dict[str, float]:
    """In-process scores: the batch feature code on the same events, the same model version."""
    rows = [{**v, "ts": datetime.fromisoformat(v["ts"])} for v in values]
    matrix = online_feature_matrix(make_events(rows), load_snapshot(lake.snapshot))
    _, predictor = Registry(lake.registry).load(reference)
    scores = predictor.predict(matrix)
    return {v["event_id"]: float(s) for v, s in zip(values, scores, strict=True)}


def test_scores_equal_in_process_predict_and_carry_the_contract(
    bootstrap: str, lake: Lake, topics: dict[str, str], consumer_group: str, serve: Any
) -> None:
    values = [event_value(i) for i in range(400)]
    produce(bootstrap, topics["events"], ((v["user_id"].encode(), orjson.dumps(v)) for v in values))
    worker = serve()
    drain(bootstrap, consumer_group, topics["events"], 400, worker)
    worker.stop()

    records = read_committed(bootstrap, topics["predictions"], at_least=400)
    predictions = [decode_prediction(r.value) for r in records]
    assert Counter(p.event_id for p in predictions) == Counter(v["event_id"] for v in values)
    expected = expected_scores(lake, values, "purchase@champion")
    got = {p.event_id: p.score for p in predictions}
    assert max(abs(got[e] - expected[e]) for e in expected) <= 1e-6
    assert len({round(s, 3) for s in got.values()}) > 20, "scores should vary across events"

    version = Registry(lake.registry).resolve("purchase@champion")
    by_id = {v["event_id"]: v for v in values}
    for record, prediction in zip(records, predictions, strict=True):
        assert record.key == prediction.user_id.encode()
        assert prediction.user_id == by_id[prediction.event_id]["user_id"]
        assert prediction.ts == datetime.fromisoformat(by_id[prediction.event_id]["ts"])
        assert (prediction.model.name, prediction.model.version) == ("purchase", version.version)
        assert prediction.model.sha256 == version.sha256
        assert prediction.variant == "champion"
        assert prediction.experiment is None
        assert prediction.features_version == FEATURES_VERSION
        assert prediction.latency_ms >= 0
    assert read_committed(bootstrap, topics["dlq"], at_least=0, quiet_s=0.5) == []


PRICE_THE_MODEL_REFUSES = 666.0


def bad_inputs() -> dict[str, bytes | None]:
    """One record of every kind of bad input, by the DLQ kind it must get."""
    nan_event = orjson.dumps(event_value(9_001)).replace(b'"price":', b'"price":NaN,"x":', 1)
    return {
        "malformed_json": b'{"event_id": "e-broken", ',
        "missing_field": orjson.dumps({k: v for k, v in event_value(9_002).items() if k != "ts"}),
        "invalid_field": orjson.dumps(event_value(9_003, price="cheap")),
        "unknown_category": orjson.dumps(event_value(9_004, category="spaceships")),
        "non_finite": nan_event,
        "oversized": orjson.dumps(event_value(9_005, session_id="s" * 100_000)),
        "model_error": orjson.dumps(event_value(9_006, price=PRICE_THE_MODEL_REFUSES)),
    }


def test_every_bad_input_is_dead_lettered_with_its_reason_and_the_rest_is_scored(
    bootstrap: str, lake: Lake, topics: dict[str, str], consumer_group: str, serve: Any
) -> None:
    bad = bad_inputs()
    good = [event_payload(i) for i in range(300)]
    payloads: list[tuple[bytes | None, bytes | None]] = list(good)
    for offset, value in enumerate(bad.values()):
        payloads.insert(40 * offset + 17, (b"u-bad", value))
    produce(bootstrap, topics["events"], payloads)
    model_error_at = math.log1p(PRICE_THE_MODEL_REFUSES)
    worker = serve(wrap=failing_loader("log_price", model_error_at))
    drain(bootstrap, consumer_group, topics["events"], len(payloads), worker)
    worker.stop()

    predictions = [
        decode_prediction(r.value)
        for r in read_committed(bootstrap, topics["predictions"], at_least=len(good))
    ]
    assert Counter(p.event_id for p in predictions) == Counter(f"e-{i}" for i in range(300))

    letters = [
        decode_dead_letter(r.value)
        for r in read_committed(bootstrap, topics["dlq"], at_least=len(bad))
    ]
    assert sorted(letter.kind for letter in letters) == sorted(bad)
    sources = read_committed(bootstrap, topics["events"], at_least=len(payloads))
    at = {(r.partition, r.offset): r.value for r in sources}
    for letter in letters:
        value = bad[letter.kind]
        assert value is not None
        assert letter.topic == topics["events"]
        assert at[(letter.partition, letter.offset)] == value
        assert letter.payload == value
    messages = {letter.kind: letter.message for letter in letters}
    assert "'ts'" in messages["missing_field"]
    assert "'price'" in messages["invalid_field"]
    assert "'price'" in messages["non_finite"]
    assert "spaceships" in messages["unknown_category"]
    assert "purchase:1.0.0" in messages["model_error"]
    assert f"over the limit of {MAX_RECORD_BYTES}" in messages["oversized"]
    assert base64.b64encode(bad["malformed_json"] or b"").decode() in [
        base64.b64encode(letter.payload).decode() for letter in letters
    ]


def test_a_batch_of_only_gated_events_dead_letters_each_with_its_own_kind(
    bootstrap: str, topics: dict[str, str], consumer_group: str, serve: Any
) -> None:
    # Alone in its batch (a quiet topic, or a batch redone record by record), an event the
    # feature gate refuses left no event to score: pyarrow's take([]) raised, and the record
    # got the exception's class as its kind instead of unknown_category.
    produce(bootstrap, topics["events"], [(b"u-gated", bad_inputs()["unknown_category"])])
    worker = serve()
    drain(bootstrap, consumer_group, topics["events"], 1, worker)
    worker.stop()
    letters = read_committed(bootstrap, topics["dlq"], at_least=1)
    (letter,) = [decode_dead_letter(r.value) for r in letters]
    assert letter.kind == "unknown_category"
    assert read_committed(bootstrap, topics["predictions"], at_least=0, quiet_s=0.5) == []


def test_an_alias_switch_is_picked_up_without_loss_or_duplicates(
    bootstrap: str,
    lake: Lake,
    topics: dict[str, str],
    consumer_group: str,
    tmp_path: Path,
) -> None:
    registry_root = str(tmp_path / "registry")
    first = register_model(registry_root, seed=0)
    second = register_model(registry_root, seed=1, alias=None)
    local = Lake(tmp_path)
    write_snapshot(local.snapshot)
    worker = ThreadedWorker(bootstrap, local, topics, consumer_group, poll_s=0.3)
    total, switched_at = 3_000, 1_500
    promoted = threading.Event()

    def stream() -> None:
        for start in range(0, total, 100):
            produce(
                bootstrap, topics["events"], (event_payload(i) for i in range(start, start + 100))
            )
            if start + 100 == switched_at:
                Registry(registry_root).promote("purchase", second.version, "champion", why="test")
                promoted.set()
            time.sleep(0.05)

    producer = threading.Thread(target=stream, daemon=True)
    producer.start()
    producer.join(TIMEOUT_S)
    assert promoted.is_set()
    drain(bootstrap, consumer_group, topics["events"], total, worker)
    worker.stop()

    predictions = [
        decode_prediction(r.value)
        for r in read_committed(bootstrap, topics["predictions"], at_least=total)
    ]
    assert Counter(p.event_id for p in predictions) == Counter(f"e-{i}" for i in range(total))
    versions = Counter(p.model.version for p in predictions)
    assert set(versions) == {first.version, second.version}
    assert worker.worker.models.switches == 1
    # Each score is the one its recorded version gives: nothing was scored by one model and
    # labelled with the other.
    values = {f"e-{i}": event_value(i) for i in range(total)}
    for version in (first.version, second.version):
        mine = [p for p in predictions if p.model.version == version]
        expected = expected_scores(local, [values[p.event_id] for p in mine], f"purchase:{version}")
        assert max(abs(p.score - expected[p.event_id]) for p in mine) <= 1e-6
    # Events produced after the switch settled are all served by the new version.
    late = [p for p in predictions if int(p.event_id[2:]) >= total - 300]
    assert {p.model.version for p in late} == {second.version}


def scrape(port: int) -> dict[str, Any]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    samples: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def total(samples: dict[str, Any], name: str, **labels: str) -> float:
    return sum(v for found, v in samples.get(name, []) if labels.items() <= found.items())


def test_prometheus_endpoint_and_sample_records_report_the_same_work(
    bootstrap: str, lake: Lake, topics: dict[str, str], consumer_group: str, serve: Any
) -> None:
    from prometheus_client import start_http_server

    from lakecast.local.ports import free_port

    port = free_port()
    server, _ = start_http_server(port, addr="127.0.0.1")
    before = scrape(port)
    payloads = [event_payload(i) for i in range(500)] + [(b"u-x", b"not json")] * 5
    produce(bootstrap, topics["events"], payloads)
    worker = serve()
    drain(bootstrap, consumer_group, topics["events"], len(payloads), worker)
    time.sleep(1.2)  # one more sample interval, so the lag and CPU gauges are set
    after = scrape(port)
    worker.stop()
    server.shutdown()

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("lakecast_worker_records_in_total") == len(payloads)
    assert delta("lakecast_worker_records_out_total", variant="champion") == 500
    assert delta("lakecast_worker_dead_letters_total", kind="malformed_json") == 5
    assert delta("lakecast_worker_end_to_end_latency_seconds_count") == 500
    assert delta("lakecast_worker_batch_size_sum") == len(payloads)
    assert delta("lakecast_worker_model_latency_seconds_count") >= 1
    version = Registry(lake.registry).resolve("purchase@champion")
    [(labels, value)] = after["lakecast_worker_model_info"]
    assert (labels["name"], labels["version"], labels["sha256"]) == (
        "purchase",
        version.version,
        version.sha256,
    )
    assert value == 1
    assert total(after, "lakecast_worker_snapshot_age_seconds") > 0
    assert total(after, "lakecast_worker_resident_memory_bytes") > 10_000_000
    lags = after["lakecast_worker_consumer_lag"]
    assert {labels["topic"] for labels, _ in lags} == {topics["events"]}
    assert all(value == 0 for _, value in lags)

    samples = [
        decode_metric(r.value) for r in read_committed(bootstrap, topics["metrics"], at_least=1)
    ]
    assert samples and all(s["kind"] == "sample" for s in samples)
    assert {s["source"] for s in samples} == {f"test-{consumer_group}"}
    assert sum(s["records_in"] for s in samples) == len(payloads)
    assert sum(s["dead_letters"] for s in samples) == 5
    assert sum(s["score"]["count"] for s in samples) == 500
    busy = [s for s in samples if s["records_in"]]
    assert all(s["latency_ms"]["p99"] >= s["latency_ms"]["p50"] > 0 for s in busy)
    assert all(s["model"]["version"] == version.version for s in busy)
    assert samples[-1]["lag_total"] == 0
    assert set(samples[-1]["lag"]) <= {f"{topics['events']}:{p}" for p in (0, 1)}
    assert all(np.isfinite(s["cpu_percent"]) for s in samples)
    # Per variant, what the canary analysis compares: records, errors, model call latencies.
    champion = [s["variants"]["champion"] for s in busy if "champion" in s["variants"]]
    assert sum(v["records"] for v in champion) == 500
    assert sum(v["errors"] for v in champion) == 0
    assert all(v["users"] > 0 for v in champion)
    assert all(v["model_latency_ms"] and min(v["model_latency_ms"]) > 0 for v in champion)


@dataclass
class ThreadCounting(WrappedPredictor):
    """Notes the most threads any native pool (OpenMP, BLAS) would use at each predict."""

    threads: list[int] = field(default_factory=list)

    def predict(self, features: Features) -> np.ndarray:
        self.threads.append(max(pool["num_threads"] for pool in threadpool_info()))
        return self.inner.predict(features)


def test_the_model_scores_with_one_native_thread(
    bootstrap: str, topics: dict[str, str], consumer_group: str, serve: Any
) -> None:
    # Several workers per machine must not each spread a small batch over every core.
    before = max(pool["num_threads"] for pool in threadpool_info())  # 2 on a 2-core machine
    counted: list[ThreadCounting] = []

    def wrap(version: ModelVersion, predictor: Predictor) -> Predictor:
        counted.append(ThreadCounting(predictor))
        return counted[-1]

    payloads = [event_payload(i) for i in range(50)]
    produce(bootstrap, topics["events"], payloads)
    worker = serve(wrap=wrap)
    drain(bootstrap, consumer_group, topics["events"], len(payloads), worker)
    worker.stop()
    calls = [n for model in counted for n in model.threads]
    assert calls and set(calls) == {1}
    assert max(pool["num_threads"] for pool in threadpool_info()) == before  # not leaked


class ModuleCrossings:
    """The calls from one lakecast module into another that a thread makes while recording,
    in order, as (caller, callee). Installed before the thread starts (``threading.setprofile``):
    Python 3.11 cannot profile a thread already running."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.thread: threading.Thread | None = None

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if event != "call" or threading.current_thread() is not self.thread:
            return
        callee = frame.f_globals.get("__name__", "")
        caller = frame.f_back.f_globals.get("__name__", "") if frame.f_back else ""
        if callee.startswith("lakecast.") and caller.startswith("lakecast.") and callee != caller:
            self.calls.append((caller, callee))


# The stages one event passes in the worker, in the order it first enters them.
EVENT_PATH = (
    "lakecast.kafka.loop",
    "lakecast.kafka.poison",
    "lakecast.serving.worker",
    "lakecast.serving.decoding",
    "lakecast.features.transforms",
    "lakecast.features.online",
    "lakecast.serving.routing",
    "lakecast.models.predictor",
    "lakecast.kafka.delivery",
)


def test_one_event_passes_each_stage_once_in_order_and_never_back(
    bootstrap: str, topics: dict[str, str], consumer_group: str, serve: Any
) -> None:
    recorder = ModuleCrossings()
    threading.setprofile(recorder)
    try:
        worker = serve()
    finally:
        threading.setprofile(None)  # only threads started from now on are affected
    produce(bootstrap, topics["events"], [event_payload(0)])  # warm: the model is loaded
    drain(bootstrap, consumer_group, topics["events"], 1, worker)
    recorder.calls.clear()
    recorder.thread = worker.thread
    produce(bootstrap, topics["events"], [event_payload(1)])
    drain(bootstrap, consumer_group, topics["events"], 2, worker)
    recorder.thread = None
    worker.stop()
    # From the loop handing the batch over (through its poison-record guard) to its commit.
    start = recorder.calls.index(("lakecast.kafka.loop", "lakecast.kafka.poison"))
    calls = recorder.calls[start:]
    visits = list(dict.fromkeys(m for call in calls for m in call))
    print("modules in the order first entered:", " -> ".join(visits))
    assert [m for m in visits if m in EVENT_PATH] == list(EVENT_PATH)
    # Never back: no module calls into one that has called into it (no A -> B -> A).
    edges = set(calls)
    bounces = sorted((a, b) for a, b in edges if (b, a) in edges)
    assert not bounces, f"modules that call each other for one event: {bounces}"
