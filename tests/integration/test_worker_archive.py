"""The archive job: predictions and metrics topics -> Delta, every committed record once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from kafka import KafkaProducer
from pyspark.sql import SparkSession

from lakecast.kafka.serde import ModelRef, Prediction, encode_metric, encode_prediction
from lakecast.lake.archive import ArchiveTarget, start_archive
from lakecast.testing.kafka import read_committed

TS = datetime(2024, 5, 2, 12, 0, tzinfo=UTC)


def prediction(i: int) -> bytes:
    return encode_prediction(
        Prediction(
            event_id=f"e-{i}",
            user_id=f"u-{i % 7}",
            ts=TS,
            score=i / 1000,
            model=ModelRef("purchase", "1.0.0", "ab" * 32),
            variant="champion",
            experiment=None,
            latency_ms=1.5,
            features_version="1.x",
        )
    )


def produce_transactions(bootstrap: str, topic: str, ids: range, *, abort: range) -> None:
    """``ids`` in one committed transaction, ``abort`` in one aborted transaction."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"t-{topic}")
    producer.init_transactions()
    producer.begin_transaction()
    for i in abort:
        producer.send(topic, key=b"u", value=prediction(i))
    producer.flush()
    producer.abort_transaction()
    producer.begin_transaction()
    for i in ids:
        producer.send(topic, key=f"u-{i % 7}".encode(), value=prediction(i))
    producer.commit_transaction()
    producer.close()


def archive_once(spark: SparkSession, bootstrap: str, targets: list[ArchiveTarget]) -> None:
    for target in targets:
        start_archive(spark, bootstrap, target, available_now=True).awaitTermination(300)


def test_archive_holds_each_committed_record_once_across_runs(
    spark: SparkSession, bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    predictions, metrics = topic_factory("predictions", 2), topic_factory("metrics")
    targets = [
        ArchiveTarget("predictions", predictions, str(tmp_path / "p"), str(tmp_path / "cp" / "p")),
        ArchiveTarget("metrics", metrics, str(tmp_path / "m"), str(tmp_path / "cp" / "m")),
    ]
    produce_transactions(bootstrap, predictions, range(300), abort=range(1_000, 1_020))
    plain = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(12):
        plain.send(metrics, key=b"w", value=encode_metric("sample", f"w{i % 2}", TS, {"n": i}))
    plain.flush()

    archive_once(spark, bootstrap, targets)
    produce_transactions(bootstrap, predictions, range(300, 450), abort=range(2_000, 2_005))
    archive_once(spark, bootstrap, targets)  # the second run adds only what is new

    in_topic = read_committed(bootstrap, predictions, at_least=450)
    archived = spark.read.format("delta").load(targets[0].table)
    rows = archived.collect()
    assert len(rows) == len(in_topic) == 450
    assert Counter(r["event_id"] for r in rows) == Counter(f"e-{i}" for i in range(450))
    assert {(r["kafka_partition"], r["kafka_offset"]) for r in rows} == {
        (r.partition, r.offset) for r in in_topic
    }
    first = next(r for r in rows if r["event_id"] == "e-42")
    assert (first["model_name"], first["model_version"], first["variant"]) == (
        "purchase",
        "1.0.0",
        "champion",
    )
    assert abs(first["score"] - 0.042) < 1e-12
    assert first["ts"].replace(tzinfo=UTC) == TS or first["ts"] == TS.replace(tzinfo=None)

    samples = spark.read.format("delta").load(targets[1].table).collect()
    assert len(samples) == 12
    assert Counter(r["source"] for r in samples) == Counter({"w0": 6, "w1": 6})
    assert {r["kind"] for r in samples} == {"sample"}
    assert all('"n":' in r["record"] for r in samples)
