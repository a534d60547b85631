"""Read a topic's committed records from the beginning, as a supervisor checks what came out.

The demo reads ``predictions``, ``events.dlq`` and ``metrics`` back to report what the
services made; tests and benchmarks do the same through :mod:`lakecast.testing.kafka`. The
reader is a consumer of :func:`lakecast.kafka.clients.build_consumer`, so the configured
security applies, assigned to every partition and in no group: it commits nothing and joins
no rebalance of the services it watches.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from kafka.structs import TopicPartition

from lakecast.config import KafkaSettings
from lakecast.kafka.clients import build_consumer

if TYPE_CHECKING:
    from kafka.consumer.fetcher import ConsumerRecord

READBACK_CLIENT_ID = "lakecast-readback"


def read_topic(
    settings: KafkaSettings,
    topic: str,
    *,
    at_least: int = 0,
    timeout_s: float = 60.0,
    quiet_s: float = 1.0,
) -> list[ConsumerRecord]:
    """Every committed record of ``topic``: read until ``at_least`` came and ``quiet_s`` passed.

    Returns what was read when ``timeout_s`` runs out, even if fewer than ``at_least``: the
    caller compares counts and says what was missing.
    """
    consumer = build_consumer(
        settings,
        group_id=None,
        client_id=READBACK_CLIENT_ID,
        max_poll_records=5_000,
        fetch_max_bytes=50 * 1024 * 1024,
    )
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout_s
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            polled = consumer.poll(timeout_ms=200)
            for batch in polled.values():
                records.extend(batch)
            if polled:
                quiet_since = time.monotonic()
            elif len(records) >= at_least and time.monotonic() - quiet_since > quiet_s:
                break
        return records
    finally:
        consumer.close()
