"""Send records of one kind to the ``metrics`` topic and wait until the broker has them.

The quality job and ``lakecast retrain`` send a handful of records per run; each send is
awaited, because a quality figure or a retraining decision that silently failed to arrive is
worse than a run that fails and is rerun.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from lakecast.config import KafkaSettings


def send_metric_records(
    kafka: KafkaSettings,
    kind: str,
    source: str,
    records: Iterable[Mapping[str, Any]],
    *,
    topic: str | None = None,
    timeout_s: float = 30.0,
) -> int:
    """Send each of ``records`` as ``kind`` from ``source``; returns how many were sent."""
    from lakecast.kafka.clients import build_producer
    from lakecast.kafka.serde import encode_key, encode_metric

    items = list(records)
    if not items:
        return 0
    producer = build_producer(kafka, mode="at_least_once", client_id=f"lakecast-{source}")
    try:
        futures = [
            producer.send(
                topic or kafka.topics.metrics,
                key=encode_key(source),
                value=encode_metric(kind, source, datetime.now(UTC), fields),
            )
            for fields in items
        ]
        for future in futures:
            future.get(timeout=timeout_s)
    finally:
        producer.close(timeout=10)
    return len(items)
