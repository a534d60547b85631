"""A small lake for tests of scheduled runs and notebooks: events, a champion, topic records.

:func:`small_lake` writes a few hundred generated events over three days into ``events``,
registers a small scikit-learn ``purchase`` model (trained on synthetic features, so it scores
the real features table over (0, 1)) as ``champion``, and puts a few committed records into the
``predictions`` and ``metrics`` topics that a daily run's archive step will read.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

START = date(2026, 1, 1)
TOPIC_RECORDS = 20
SAMPLE_STEP_S = 5.0


@dataclass(frozen=True)
class SmallLake:
    """Where the small lake's inputs are (the outputs go under ``root`` as configured)."""

    root: Path
    events: str
    registry: str
    bootstrap: str
    predictions_topic: str
    metrics_topic: str
    model_version: str

    def environment(self) -> dict[str, str]:
        """``LAKECAST__...`` overrides that point lakecast's config at this lake and topics."""
        return {
            "LAKECAST__LAKE__ROOT": str(self.root),
            "LAKECAST__KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "LAKECAST__KAFKA__TOPICS__PREDICTIONS": self.predictions_topic,
            "LAKECAST__KAFKA__TOPICS__METRICS": self.metrics_topic,
        }


def metric_records(start: datetime) -> list[tuple[str, str, datetime, dict[str, Any]]]:
    """``TOPIC_RECORDS`` samples of two workers every ``SAMPLE_STEP_S`` s with a load spike,
    the monitor's anomaly on it and the autoscaler's decisions up and back down: what a
    ``metrics`` topic holds after a short replay (kind, source, ts, that kind's fields)."""
    records: list[tuple[str, str, datetime, dict[str, Any]]] = []
    replicas = 2
    for i in range(TOPIC_RECORDS):
        at = start + timedelta(seconds=SAMPLE_STEP_S * i)
        spike = 1.0 + (3.0 if 8 <= i < 12 else 0.0)
        if i == 10:
            records.append(
                (
                    "anomaly",
                    "monitor",
                    at,
                    {"metric": "lag_total", "score": 0.99, "value": 900.0, "series": "fleet/lag"},
                )
            )
            records.append(
                (
                    "scaling",
                    "autoscaler",
                    at,
                    {"current": 2, "desired": 3, "direction": "up", "metric": "lag"},
                )
            )
            replicas = 3
        if i == 16:
            records.append(
                (
                    "scaling",
                    "autoscaler",
                    at,
                    {"current": 3, "desired": 2, "direction": "down", "metric": "idle"},
                )
            )
            replicas = 2
        for worker in range(replicas):
            fields = {
                "records_in_per_s": 100.0 * spike / replicas,
                "latency_ms": {"p50": 4.0 * spike, "p95": 8.0 * spike, "p99": 12.0 * spike},
                "lag_total": int(60 * (spike - 1) * 5 + i % 3),
                "worker_index": worker,
            }
            records.append(("sample", f"w{worker}", at, fields))
    return records  # fmt: skip


def small_lake(
    spark: SparkSession, root: Path, bootstrap: str, *, rows: int = 900, days: int = 3
) -> SmallLake:
    """Write the events, register the champion and fill two new topics (see the module)."""
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    from lakecast.data.clickstream import ClickstreamRun, generate_events
    from lakecast.data.events_table import write_events
    from lakecast.kafka.serde import ModelRef, Prediction, encode_metric, encode_prediction
    from lakecast.models.training import GradientBoostingRecipe
    from lakecast.models.training_run import model_signature
    from lakecast.registry import Registry
    from lakecast.testing.features import synthetic_feature_matrix

    run = ClickstreamRun(rows=rows, days=days, seed=5, start_date=START)
    events = str(root / "events")
    write_events(generate_events(spark, run.rows, run.days, run.seed, run.start_date), events, run)
    registry = Registry(root / "registry")
    x, y = synthetic_feature_matrix(1500, seed=2)
    model = GradientBoostingRecipe(max_iter=20, seed=1).fit(x, y)
    record = registry.register("purchase", model, flavor="sklearn", signature=model_signature())
    registry.promote("purchase", record.version, "champion")

    suffix = uuid.uuid4().hex[:8]
    predictions, metrics = f"predictions-{suffix}", f"metrics-{suffix}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(name, 1, 1) for name in (predictions, metrics)], 30_000)
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    ts = datetime(START.year, START.month, START.day + 1, 12, tzinfo=UTC)
    ref = ModelRef("purchase", record.version, record.sha256)
    for i in range(TOPIC_RECORDS):
        value = Prediction(
            event_id=f"e-{i}",
            user_id=f"u-{i % 3}",
            ts=ts,
            score=i / TOPIC_RECORDS,
            model=ref,
            variant="champion",
            experiment=None,
            latency_ms=1.0,
            features_version="1.x",
        )
        producer.send(predictions, key=b"u", value=encode_prediction(value))
    for kind, source, at, fields in metric_records(ts):
        producer.send(metrics, key=source.encode(), value=encode_metric(kind, source, at, fields))
    producer.flush()
    producer.close()
    return SmallLake(
        root=root,
        events=events,
        registry=str(registry.root),
        bootstrap=bootstrap,
        predictions_topic=predictions,
        metrics_topic=metrics,
        model_version=record.version,
    )
