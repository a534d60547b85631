"""A small lake for tests of scheduled runs and notebooks: events, a champion, topic records.

:func:`small_lake` writes a few hundred generated events over three days into ``events``,
registers a small scikit-learn ``purchase`` model (trained on synthetic features, so it scores
the real features table over (0, 1); its lineage names those rows, kept as a Delta table, so
the drift job has a reference) as ``champion``, and puts a few committed records into the
``predictions``, ``metrics`` and ``served_features`` topics that a daily run's archive step
will read. The served-feature sample is of the second day, its first feature shifted by
:data:`SHIFT` standard deviations: the one feature the drift step must flag.
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
SERVED_SAMPLES = 600  # enough that no unshifted feature's KS passes 0.1 by chance
SHIFT = 2.5
TRAINING_DAYS = 3  # the champion's training rows: the days before START


@dataclass(frozen=True)
class SmallLake:
    """Where the small lake's inputs are (the outputs go under ``root`` as configured)."""

    root: Path
    events: str
    registry: str
    bootstrap: str
    predictions_topic: str
    metrics_topic: str
    served_features_topic: str
    model_version: str

    def environment(self) -> dict[str, str]:
        """``LAKECAST__...`` overrides that point lakecast's config at this lake and topics."""
        return {
            "LAKECAST__LAKE__ROOT": str(self.root),
            "LAKECAST__KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "LAKECAST__KAFKA__TOPICS__PREDICTIONS": self.predictions_topic,
            "LAKECAST__KAFKA__TOPICS__METRICS": self.metrics_topic,
            "LAKECAST__KAFKA__TOPICS__SERVED_FEATURES": self.served_features_topic,
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


def served_feature_values(model: dict[str, str], day: date) -> list[dict[str, Any]]:
    """:data:`SERVED_SAMPLES` ``served_features`` records of ``day``, the first feature shifted."""
    from lakecast.features.spec import FEATURE_COLUMNS, FEATURES_VERSION
    from lakecast.testing.features import synthetic_feature_matrix

    matrix, _ = synthetic_feature_matrix(SERVED_SAMPLES, seed=11)
    matrix[:, 0] += SHIFT
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    return [
        {
            "event_id": f"s-{i}",
            "user_id": f"u-{i % 7}",
            "event_ts": noon + timedelta(seconds=i),
            "model": model,
            "variant": "champion",
            "features_version": FEATURES_VERSION,
            "features": dict(zip(FEATURE_COLUMNS, row.tolist(), strict=True)),
            "invariant_violations": [],
            "source": "w0",
            "ts": noon + timedelta(seconds=i, milliseconds=5),
        }
        for i, row in enumerate(matrix)
    ]


def _training_table(path: str) -> tuple[int, dict[str, Any]]:
    """The champion's training rows (the same matrix it is fitted on) as a ``features`` table:
    its Delta version and the lineage's dates."""
    from deltalake import DeltaTable, write_deltalake

    from lakecast.testing.features import synthetic_features

    first = START - timedelta(days=TRAINING_DAYS)
    write_deltalake(
        path,
        synthetic_features(1500, seed=2, days=TRAINING_DAYS, start_date=first),
        partition_by=["date"],
    )
    dates = {
        "train_from": first.isoformat(),
        "train_to": (START - timedelta(days=1)).isoformat(),
        "train_rows": 1500,
    }
    return int(DeltaTable(path).version()), dates


def small_lake(
    spark: SparkSession, root: Path, bootstrap: str, *, rows: int = 900, days: int = 3
) -> SmallLake:
    """Write the events, register the champion and fill two new topics (see the module)."""
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    from lakecast.data.clickstream import ClickstreamRun, generate_events
    from lakecast.data.events_table import write_events
    from lakecast.kafka.serde import (
        ModelRef,
        Prediction,
        encode_json,
        encode_metric,
        encode_prediction,
    )
    from lakecast.models.training import GradientBoostingRecipe
    from lakecast.models.training_run import model_signature
    from lakecast.registry import Lineage, Registry
    from lakecast.testing.features import synthetic_feature_matrix

    run = ClickstreamRun(rows=rows, days=days, seed=5, start_date=START)
    events = str(root / "events")
    write_events(generate_events(spark, run.rows, run.days, run.seed, run.start_date), events, run)
    registry = Registry(root / "registry")
    x, y = synthetic_feature_matrix(1500, seed=2)
    model = GradientBoostingRecipe(max_iter=20, seed=1).fit(x, y)
    training = str(root / "training_features")
    training_version, dates = _training_table(training)
    lineage = Lineage(
        training_table=training, training_table_version=training_version, holdout=dates
    )
    record = registry.register(
        "purchase", model, flavor="sklearn", signature=model_signature(), lineage=lineage
    )
    registry.promote("purchase", record.version, "champion")

    suffix = uuid.uuid4().hex[:8]
    predictions, metrics = f"predictions-{suffix}", f"metrics-{suffix}"
    served = f"served-features-{suffix}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(name, 1, 1) for name in (predictions, metrics, served)], 30_000)
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
    model_ref = {"name": "purchase", "version": record.version, "sha256": record.sha256}
    for sample in served_feature_values(model_ref, ts.date()):
        producer.send(served, key=sample["user_id"].encode(), value=encode_json(sample))
    producer.flush()
    producer.close()
    return SmallLake(
        root=root,
        events=events,
        registry=str(registry.root),
        bootstrap=bootstrap,
        predictions_topic=predictions,
        metrics_topic=metrics,
        served_features_topic=served,
        model_version=record.version,
    )
