"""Archive the ``predictions`` and ``metrics`` topics into Delta tables (Structured Streaming).

Spark's Kafka source reads committed records only (``kafka.isolation.level=read_committed``,
so an aborted worker transaction never reaches the archive) and the Delta sink with a
checkpoint writes each micro-batch once, so the archive holds each topic record exactly once,
however often the job is stopped and started. ``available_now`` archives what is there and
stops (for a scheduler); otherwise the query runs until stopped.

Predictions are flattened into typed columns; metrics keep ``kind``, ``source`` and ``ts`` as
columns and the whole record as JSON (each kind has its own fields); served features (the
workers' sample, :mod:`lakecast.serving.feature_log`) keep the vector as a map from feature
name to value, so a new features version adds keys, not columns. Both keep the Kafka
coordinates (``kafka_partition``, ``kafka_offset``, ``kafka_timestamp``) and are partitioned
by the record's UTC date.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from lakecast.errors import StreamError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

    from lakecast.config import KafkaSecurity, KafkaSettings

TopicKind = Literal["predictions", "metrics", "served_features"]

PREDICTION_SCHEMA = (
    "event_id STRING, user_id STRING, ts TIMESTAMP, score DOUBLE, "
    "model STRUCT<name: STRING, version: STRING, sha256: STRING>, variant STRING, "
    "experiment STRING, served BOOLEAN, latency_ms DOUBLE, features_version STRING"
)
METRIC_SCHEMA = "kind STRING, source STRING, ts TIMESTAMP"
SERVED_FEATURES_SCHEMA = (
    "event_id STRING, user_id STRING, event_ts TIMESTAMP, "
    "model STRUCT<name: STRING, version: STRING, sha256: STRING>, variant STRING, "
    "features_version STRING, features MAP<STRING, DOUBLE>, invariant_violations ARRAY<STRING>, "
    "source STRING, ts TIMESTAMP"
)


@dataclass(frozen=True)
class ArchiveTarget:
    """One topic and the Delta table (and checkpoint) it is archived into."""

    kind: TopicKind
    topic: str
    table: str
    checkpoint: str


def broker_topics(kafka: KafkaSettings, bootstrap: str) -> set[str]:
    """The topics the broker at ``bootstrap`` holds (and this principal may see), listed with
    the configured client (its security)."""
    from lakecast.kafka.clients import build_admin

    admin = build_admin(kafka, bootstrap_servers=bootstrap.split(","))
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def topics_on_broker(
    targets: Iterable[ArchiveTarget], existing: Collection[str], *, available_now: bool
) -> tuple[list[ArchiveTarget], list[ArchiveTarget]]:
    """Split ``targets`` into those whose topic the broker holds and those whose topic it lacks.

    Spark's Kafka source (``subscribe``) describes its topics when a query starts, and a topic
    that does not exist fails the query with ``UnknownTopicOrPartitionException: This server
    does not host this topic-partition``, a message that names no topic. Checked here instead:
    a run that archives what is there and stops (``available_now``) has nothing to archive
    from a topic no one has written yet (say, ``served_features`` before any worker sampled),
    so the caller skips it and says so; a continuous archive would never pick the topic up
    once it appears, so it refuses to start, naming the topic.

    Raises:
        StreamError: not ``available_now`` and a target's topic does not exist.
    """
    present: list[ArchiveTarget] = []
    missing: list[ArchiveTarget] = []
    for target in targets:
        (present if target.topic in existing else missing).append(target)
    if missing and not available_now:
        names = ", ".join(f"{t.topic!r} ({t.kind})" for t in missing)
        msg = (
            f"archive: the broker has no topic {names}; a continuous archive cannot wait for "
            "one to appear. Create it (the workers create their topics when they start), "
            "pass another topic name, or archive what is there with --available-now"
        )
        raise StreamError(msg)
    return present, missing


def kafka_source(
    spark: SparkSession, bootstrap: str, topic: str, options: Mapping[str, str] | None = None
) -> DataFrame:
    """A streaming DataFrame of the committed records of ``topic``, from the earliest."""
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .option("kafka.isolation.level", "read_committed")
        .option("failOnDataLoss", "false")
    )
    for key, value in (options or {}).items():
        reader = reader.option(key, value)
    return reader.load()


def archive_rows(records: DataFrame, kind: TopicKind) -> DataFrame:
    """Kafka records (key, value, partition, offset, timestamp) -> the archive's columns."""
    from pyspark.sql import functions as F

    value = F.col("value").cast("string")
    coordinates = [
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.to_date(F.col("timestamp")).alias("date"),
    ]
    if kind == "predictions":
        parsed = records.select(F.from_json(value, PREDICTION_SCHEMA).alias("p"), *coordinates)
        return parsed.select(
            "p.event_id",
            "p.user_id",
            "p.ts",
            "p.score",
            F.col("p.model.name").alias("model_name"),
            F.col("p.model.version").alias("model_version"),
            F.col("p.model.sha256").alias("model_sha256"),
            "p.variant",
            "p.experiment",
            "p.served",
            "p.latency_ms",
            "p.features_version",
            "kafka_partition",
            "kafka_offset",
            "kafka_timestamp",
            "date",
        )
    if kind == "served_features":
        parsed = records.select(F.from_json(value, SERVED_FEATURES_SCHEMA).alias("s"), *coordinates)
        return parsed.select(
            "s.event_id",
            "s.user_id",
            "s.event_ts",
            F.col("s.model.name").alias("model_name"),
            F.col("s.model.version").alias("model_version"),
            F.col("s.model.sha256").alias("model_sha256"),
            "s.variant",
            "s.features_version",
            "s.features",
            "s.invariant_violations",
            "s.source",
            "s.ts",
            "kafka_partition",
            "kafka_offset",
            "kafka_timestamp",
            "date",
        )
    parsed = records.select(
        F.from_json(value, METRIC_SCHEMA).alias("m"), value.alias("record"), *coordinates
    )
    return parsed.select(
        "m.kind",
        "m.source",
        "m.ts",
        "record",
        "kafka_partition",
        "kafka_offset",
        "kafka_timestamp",
        "date",
    )


def start_archive(
    spark: SparkSession,
    bootstrap: str,
    target: ArchiveTarget,
    *,
    available_now: bool,
    trigger_s: float = 10.0,
    kafka_options: Mapping[str, str] | None = None,
) -> StreamingQuery:
    """Start the query that appends ``target.topic`` to ``target.table``."""
    rows = archive_rows(kafka_source(spark, bootstrap, target.topic, kafka_options), target.kind)
    writer = (
        rows.writeStream.format("delta")
        .outputMode("append")
        .option("checkpointLocation", target.checkpoint)
        # An archive written before a column of the contract existed (``served``) gains it.
        .option("mergeSchema", "true")
        .partitionBy("date")
        .queryName(f"archive-{target.kind}-{target.topic}")
    )
    if available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{trigger_s} seconds")
    return writer.start(target.table)


def kafka_client_options(security: KafkaSecurity) -> dict[str, str]:
    """``kafka.security`` as the ``kafka.*`` options of Spark's Kafka source (the Java client).

    The SASL password is read here, in the driver, from ``sasl_password`` or
    ``sasl_password_file``, into the JAAS line: never on spark-submit's command line. The CA
    file is a PEM truststore (Kafka clients 2.7+). A client certificate (``ssl_certfile``)
    takes a PEM keystore holding key and certificate: pass ``kafka.ssl.keystore.*`` directly.
    """
    options: dict[str, str] = {"kafka.security.protocol": security.protocol}
    if security.sasl_mechanism:
        options["kafka.sasl.mechanism"] = security.sasl_mechanism
    if security.sasl_mechanism in _LOGIN_MODULES and security.sasl_username:
        password = security.password() or ""
        options["kafka.sasl.jaas.config"] = (
            f"{_LOGIN_MODULES[security.sasl_mechanism]} required "
            f'username="{_jaas_quoted(security.sasl_username)}" '
            f'password="{_jaas_quoted(password)}";'
        )
    if security.protocol.endswith("SSL"):
        if security.ssl_cafile:
            options["kafka.ssl.truststore.type"] = "PEM"
            options["kafka.ssl.truststore.location"] = security.ssl_cafile
        options["kafka.ssl.endpoint.identification.algorithm"] = (
            "https" if security.ssl_check_hostname else ""
        )
    return options


_LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


def _jaas_quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
