"""A model that scores NaN or infinity: never served, dead-lettered, counted per version, alerted.

The worker serves in a thread against the session broker and a real registry and snapshot; the
monitor's handling is fed the worker's own sample records as read back from the topic.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import REGISTRY

from lakecast.config import KafkaSettings
from lakecast.kafka.dlq import decode_dead_letter
from lakecast.kafka.serde import decode_metric, decode_prediction
from lakecast.models.predictor import Features, Predictor
from lakecast.monitoring.monitor import MonitorService
from lakecast.registry import Registry
from lakecast.registry.records import ModelVersion
from lakecast.testing.events import event_payload, event_value
from lakecast.testing.kafka import produce, read_committed
from lakecast.testing.predictors import WrappedPredictor
from tests.integration.worker_fixtures import (
    Lake,
    ThreadedWorker,
    drain,
    served_lake,
    worker_topics,
)

pytestmark = pytest.mark.integration

NAN_PRICE, INF_PRICE = 313.37, 717.17  # no synthetic event has these prices


@dataclass
class NonFinitePredictor(WrappedPredictor):
    """Scores NaN where ``log_price`` is log1p(NAN_PRICE) and +inf at log1p(INF_PRICE): the
    stand-in for a numerically broken model (overflow, a bad weight), the rest as the model."""

    def predict(self, features: Features) -> np.ndarray:
        matrix = np.asarray(features, dtype=np.float64)
        column = matrix[:, list(self.signature.input_names).index("log_price")]
        scores = np.asarray(self.inner.predict(features), dtype=np.float64).copy()
        scores[np.isclose(column, math.log1p(NAN_PRICE), rtol=0, atol=1e-9)] = np.nan
        scores[np.isclose(column, math.log1p(INF_PRICE), rtol=0, atol=1e-9)] = np.inf
        return scores


def _wrap(version: ModelVersion, predictor: Predictor) -> Predictor:
    return NonFinitePredictor(predictor)


def _counter(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_nonfinite_scores_are_dead_lettered_counted_per_version_and_alerted(
    bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
    topic_factory: Callable[..., str],
    consumer_group: str,
) -> None:
    lake: Lake = served_lake(tmp_path_factory.mktemp("nonfinite"))
    topics = worker_topics(topic_factory)
    version = Registry(lake.registry).resolve("purchase@champion").version
    labels = {"model": "purchase", "version": version}
    before = _counter("lakecast_nonfinite_scores_total", labels)
    payloads: list[tuple[bytes | None, bytes | None]] = [event_payload(i) for i in range(200)]
    broken = {
        "e-9001": orjson.dumps(event_value(9_001, price=NAN_PRICE)),
        "e-9002": orjson.dumps(event_value(9_002, price=INF_PRICE)),
        "e-9003": orjson.dumps(event_value(9_003, price=NAN_PRICE)),
    }
    for offset, value in enumerate(broken.values()):
        payloads.insert(50 * offset + 7, (b"u-broken", value))
    produce(bootstrap, topics["events"], payloads)
    worker = ThreadedWorker(bootstrap, lake, topics, consumer_group, wrap=_wrap)
    try:
        drain(bootstrap, consumer_group, topics["events"], len(payloads), worker)
        time.sleep(1.2)  # one more sample interval: the last batch's counts are in a sample
    finally:
        worker.stop()
    samples = [
        decode_metric(r.value) for r in read_committed(bootstrap, topics["metrics"], at_least=1)
    ]

    predictions = [
        decode_prediction(r.value)
        for r in read_committed(bootstrap, topics["predictions"], at_least=200)
    ]
    assert sorted(p.event_id for p in predictions) == sorted(f"e-{i}" for i in range(200))
    assert all(math.isfinite(p.score) for p in predictions)
    letters = [
        decode_dead_letter(r.value) for r in read_committed(bootstrap, topics["dlq"], at_least=3)
    ]
    assert sorted(orjson.loads(letter.payload)["event_id"] for letter in letters) == sorted(broken)
    assert {letter.kind for letter in letters} == {"model_error"}
    messages = sorted(letter.message for letter in letters)
    assert messages == sorted(
        [f"model purchase:{version}: non-finite score nan, not served"] * 2
        + [f"model purchase:{version}: non-finite score inf, not served"]
    )
    # The worker's own counter and its samples, per version.
    assert _counter("lakecast_nonfinite_scores_total", labels) == before + 3
    per_sample = [s["nonfinite_scores"] for s in samples if s.get("nonfinite_scores")]
    assert sum(c[f"purchase:{version}"] for c in per_sample) == 3

    # The monitor reads the same samples: the fleet counter and one alert (then a cooldown).
    service = MonitorService(KafkaSettings(bootstrap_servers=bootstrap), topics["metrics"])
    counted = _counter("lakecast_nonfinite_scores_total", labels)
    alerts: list[dict[str, Any]] = []
    for record in read_committed(bootstrap, topics["metrics"], at_least=len(samples)):
        alerts += service.handle(record) or []
    assert service.stats.bad_records == 0
    assert _counter("lakecast_nonfinite_scores_total", labels) == counted + 3
    found = [a for a in alerts if a["detector"] == "nonfinite_scores"]
    assert len(found) == 1
    assert (found[0]["model"], found[0]["version"], found[0]["direction"]) == (
        "purchase",
        version,
        "high",
    )
    assert "NaN or infinite" in found[0]["reason"]
