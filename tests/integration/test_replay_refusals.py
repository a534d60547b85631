"""The replay checks what the broker did with every record it sent (real broker).

A record over the topic's ``max.message.bytes`` passes the producer's own size check and is
refused by the broker afterwards, in the send's future: before, the replay flushed without
looking and counted it as sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest

from lakecast.config import KafkaSettings
from lakecast.data.replay import replay
from lakecast.errors import DataError
from lakecast.kafka.clients import build_producer
from lakecast.testing.events import synthetic_payloads
from lakecast.testing.kafka import read_committed

TOPIC_MAX_BYTES = 20_000


def test_a_record_the_broker_refuses_stops_the_replay_and_is_counted(
    bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("replay", partitions=1, max_message_bytes=TOPIC_MAX_BYTES)
    events = list(synthetic_payloads(40))
    # Well under the producer's max_request_size (1 MB), three times the topic's limit.
    oversized = (b"u-0", json.dumps({"event_id": "big", "pad": "x" * 3 * TOPIC_MAX_BYTES}).encode())
    payloads = [*events[:10], oversized, *events[10:]]
    producer = build_producer(KafkaSettings(bootstrap_servers=bootstrap), mode="at_least_once")
    try:
        with pytest.raises(DataError) as refused:
            replay(producer, topic, iter(payloads))
    finally:
        producer.close()

    message = str(refused.value)
    found = re.search(r"write (\d+) of (\d+) events to '([^']+)'", message)
    assert found is not None, message
    count, sent = int(found.group(1)), int(found.group(2))
    assert found.group(3) == topic
    assert count >= 1
    assert 11 <= sent <= len(payloads), "the replay went on after the refusal came back"
    assert "MessageSizeTooLargeError" in message
    assert f"{sent - count} written" in message

    # Nothing lost silently: the topic holds exactly the events not counted as refused.
    # (kafka-python's idempotent producer also fails the records queued behind the refused
    # one on its partition: 31 of 41 refused, 10 written, with the oversized record 11th.)
    written = [r.value for r in read_committed(bootstrap, topic, at_least=sent - count)]
    assert len(written) == sent - count
    assert oversized[1] not in written
    assert set(written) <= {value for _, value in payloads[:sent]}
