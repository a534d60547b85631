"""Helpers for the rollout tests: tiny registered models and a synthetic fleet of workers.

:class:`SyntheticFleet` stands in for inference workers on the metrics side only: it polls
the rollout state like a worker does (:class:`RolloutSource`), routes simulated users with
the real :class:`Router`, and sends ``kind=sample`` records with per-variant raw values to a
real metrics topic. A variant's :class:`Behaviour` sets how it differs (added latency,
shifted scores), which is what the canary analysis must notice.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from kafka import KafkaConsumer, KafkaProducer
from sklearn.linear_model import LogisticRegression

from lakecast.kafka.serde import decode_metric, encode_key, encode_metric
from lakecast.registry import ModelCard, ModelVersion, Registry, Signature
from lakecast.rollout.router import Router
from lakecast.rollout.source import RolloutSource

MODEL = "ctr"
COLUMNS = ("a", "b", "c")


def complete_card(note: str = "") -> ModelCard:
    return ModelCard(
        model_details=f"Logistic regression on three columns. {note}",
        intended_use="Tests of the rollout control plane.",
        factors="none",
        metrics="auc on a random holdout",
        evaluation_data="random normal draws",
        training_data="random normal draws",
        caveats_and_recommendations="Not a real model.",
    )


def register_version(
    registry: Registry,
    *,
    auc: float = 0.80,
    batch_latency_ms: float = 10.0,
    columns: tuple[str, ...] = COLUMNS,
    card: ModelCard | None = None,
    seed: int = 0,
) -> ModelVersion:
    """A fresh LogisticRegression over random data, registered as the next version."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(60, len(columns)))
    y = (x[:, 0] + 0.3 * rng.normal(size=60) > 0).astype(int)
    return registry.register(
        MODEL,
        LogisticRegression(C=1.0 + seed).fit(x, y),
        signature=Signature.of(list(columns)),
        metrics={"holdout_roc_auc": auc, "batch_latency_ms": batch_latency_ms},
        card=card if card is not None else complete_card(f"seed {seed}"),
    )


def registry_with_champion(root: Path) -> Registry:
    """``ctr`` 1.0.0 live as champion, 1.1.0 a good candidate."""
    registry = Registry(root)
    first = register_version(registry, seed=0)
    registry.promote(MODEL, first.version, "champion", who="test", why="first")
    register_version(registry, auc=0.81, seed=1)
    return registry


@dataclass(frozen=True)
class Behaviour:
    """How a variant's traffic looks on the metrics side."""

    latency_ms: float = 12.0
    model_latency_ms: float = 4.0
    score_shift: float = 0.0
    error_rate: float = 0.0


class SyntheticFleet:
    """Sends a sample of ``users_per_sample`` routed users every ``interval_s`` seconds."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        root: str,
        behaviours: dict[str, Behaviour],
        *,
        model: str = MODEL,
        users_per_sample: int = 400,
        interval_s: float = 0.15,
        seed: int = 0,
    ) -> None:
        self.topic = topic
        self.behaviours = behaviours
        self.users_per_sample = users_per_sample
        self.interval_s = interval_s
        self.source = RolloutSource(root, model, interval_s=0.1)
        self.model = model
        self.sent = 0
        self.routed: dict[str, int] = {}
        self._rng = np.random.default_rng(seed)
        self._producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SyntheticFleet:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._producer.flush(timeout=10)
        self._producer.close(timeout=10)

    def _variant_stats(self, behaviour: Behaviour, count: int) -> dict[str, Any]:
        rng = self._rng
        errors = int(rng.binomial(count, behaviour.error_rate)) if count else 0
        scores = np.clip(rng.beta(2.0, 5.0, size=count) + behaviour.score_shift, 0.0, 1.0)
        return {
            "records": count,
            "errors": errors,
            "latency_ms": rng.gamma(9.0, behaviour.latency_ms / 9.0, size=count).round(4).tolist(),
            "model_latency_ms": rng.gamma(9.0, behaviour.model_latency_ms / 9.0, size=count)
            .round(4)
            .tolist(),
            "scores": scores.round(6).tolist(),
        }

    def sample(self) -> dict[str, Any] | None:
        """One sample record of the current routing, or None with no rollout."""
        state = self.source.current()
        if state is None:
            return None
        router = Router(state)
        users = [f"user-{uuid.uuid4().hex[:10]}" for _ in range(self.users_per_sample)]
        routes = router.route_batch(users)
        variants = {}
        for name, positions in routes.by_variant().items():
            self.routed[name] = self.routed.get(name, 0) + int(positions.size)
            behaviour = self.behaviours.get(name, Behaviour())
            variants[name] = self._variant_stats(behaviour, int(positions.size))
        return {"model": {"name": self.model}, "records_in": len(users), "variants": variants}

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            fields = self.sample()
            if fields is None:
                continue
            value = encode_metric("sample", "fleet-0", datetime.now(UTC), fields)
            self._producer.send(self.topic, key=encode_key("fleet-0"), value=value)
            self.sent += 1


def read_metrics(bootstrap: str, topic: str, kind: str) -> list[dict[str, Any]]:
    """Every committed record of ``kind`` on a metrics topic, from the beginning."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        consumer_timeout_ms=3_000,
    )
    try:
        records = [decode_metric(message.value) for message in consumer]
    finally:
        consumer.close()
    return [record for record in records if record["kind"] == kind]
