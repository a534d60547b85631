"""Kafka helpers for tests and benchmarks: produce, read back, watch a group's progress.

Built on :mod:`lakecast.kafka.clients`, so the security of the settings given applies (a
secured test cluster is read as its principal). ``cluster`` is the :class:`KafkaSettings` of
the cluster, or only its bootstrap servers for a plaintext one, as most tests have.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from kafka.errors import KafkaError

from lakecast.config import KafkaSettings
from lakecast.kafka.clients import build_admin, build_producer
from lakecast.kafka.readback import read_topic

if TYPE_CHECKING:
    from kafka.consumer.fetcher import ConsumerRecord

# Fuzzed records go up to the broker's default message.max.bytes, above kafka-python's 1 MiB
# default request limit.
MAX_REQUEST_BYTES = 4 * 1024 * 1024


def kafka_settings(cluster: KafkaSettings | str) -> KafkaSettings:
    """``cluster`` as settings: bootstrap servers alone mean a plaintext cluster."""
    if isinstance(cluster, KafkaSettings):
        return cluster
    return KafkaSettings(bootstrap_servers=cluster)


def produce(
    cluster: KafkaSettings | str,
    topic: str,
    payloads: Iterable[tuple[bytes | None, bytes | None]],
) -> int:
    """Send (key, value) pairs with an idempotent producer and wait until all are written."""
    producer = build_producer(
        kafka_settings(cluster),
        mode="at_least_once",
        client_id="lakecast-test-producer",
        linger_ms=10,
        batch_size=256 * 1024,
        max_request_size=MAX_REQUEST_BYTES,
    )
    count = 0
    try:
        for key, value in payloads:
            producer.send(topic, key=key, value=value)
            count += 1
        producer.flush()
    finally:
        producer.close()
    return count


def read_committed(
    cluster: KafkaSettings | str,
    topic: str,
    *,
    at_least: int,
    timeout_s: float = 60.0,
    quiet_s: float = 1.0,
) -> list[ConsumerRecord]:
    """Every committed record of ``topic``: read until ``at_least`` came and ``quiet_s`` passed."""
    return read_topic(
        kafka_settings(cluster), topic, at_least=at_least, timeout_s=timeout_s, quiet_s=quiet_s
    )


def committed_total(cluster: KafkaSettings | str, group: str, topic: str) -> int:
    """The sum of ``group``'s committed offsets on ``topic`` (0 before the first commit)."""
    admin = build_admin(kafka_settings(cluster), client_id="lakecast-test-admin")
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    except KafkaError:  # the coordinator is loading
        return 0
    finally:
        admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)


def read_json(
    cluster: KafkaSettings | str, topic: str, *, at_least: int = 0, quiet_s: float = 1.0
) -> list[dict[str, Any]]:
    """The committed records of ``topic`` that are JSON objects, decoded; the others skipped
    (a metrics topic read back after a test wrote bad records to it on purpose)."""
    out: list[dict[str, Any]] = []
    for record in read_committed(cluster, topic, at_least=at_least, quiet_s=quiet_s):
        try:
            value = json.loads(record.value)
        except (TypeError, ValueError):
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


__all__ = ["committed_total", "kafka_settings", "produce", "read_committed", "read_json"]
