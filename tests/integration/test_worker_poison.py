"""One poison record never stalls its partition (issue 13): a real worker, a real broker.

An event that passed validation but carried a user id of about 1 MB made a prediction (key
+ value) of about 2 MB, over the producer's ``max_request_size``: the transaction aborted, the
batch was retried until the worker exited, and a restarted worker read the same batch again.
Here such events sit in a batch of good ones; every good event must get exactly one
prediction, each poison event exactly one dead letter, and the worker must go on serving.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from lakecast.kafka.dlq import decode_dead_letter
from lakecast.kafka.serde import decode_prediction
from lakecast.testing.events import event_payload, event_value
from lakecast.testing.kafka import produce, read_committed
from tests.integration.worker_fixtures import (
    TIMEOUT_S,
    Lake,
    ThreadedWorker,
    drain,
    served_lake,
    worker_topics,
)

# The worker's own default limit on an input value (serving.max_record_bytes): the poison
# events are under it, so they pass the size check and reach the contract's field checks.
WORKER_MAX_RECORD_BYTES = 1_000_000
# A predictions topic whose broker-side limit is under what the second poison event's
# prediction would be (about 2 x 150 KB) and far over any well-formed one.
PREDICTIONS_MAX_MESSAGE_BYTES = 200_000


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return served_lake(tmp_path_factory.mktemp("poison"))


@pytest.fixture
def topics(topic_factory: Callable[..., str]) -> dict[str, str]:
    made = worker_topics(topic_factory)
    made["predictions"] = topic_factory(
        "predictions", 2, max_message_bytes=PREDICTIONS_MAX_MESSAGE_BYTES
    )
    return made


@pytest.fixture
def worker(
    bootstrap: str,
    lake: Lake,
    topics: dict[str, str],
    consumer_group: str,
) -> Iterator[ThreadedWorker]:
    started = ThreadedWorker(
        bootstrap, lake, topics, consumer_group, max_record_bytes=WORKER_MAX_RECORD_BYTES
    )
    yield started
    started.stop_event.set()
    started.thread.join(TIMEOUT_S)


def poison_events() -> dict[str, dict[str, Any]]:
    """Events that today's contract took, whose prediction cannot be produced."""
    huge = event_value(9_001, user_id="u-" + "x" * 999_000)  # 2 MB with the key: client refuses
    large = event_value(9_002, user_id="u-" + "y" * 150_000)  # 300 KB: the topic refuses
    for value in (huge, large):
        assert len(orjson.dumps(value)) <= WORKER_MAX_RECORD_BYTES
    return {"huge": huge, "large": large}


def test_a_poison_event_is_one_dead_letter_and_the_worker_serves_on(
    bootstrap: str, topics: dict[str, str], consumer_group: str, worker: ThreadedWorker
) -> None:
    poison = poison_events()
    good = [event_payload(i) for i in range(120)]
    payloads: list[tuple[bytes | None, bytes | None]] = list(good)
    # Short keys: the events topic itself takes the records (a producer keys by user id,
    # but the key is not what made the prediction too large).
    payloads.insert(30, (b"u-huge", orjson.dumps(poison["huge"])))
    payloads.insert(80, (b"u-large", orjson.dumps(poison["large"])))
    produce(bootstrap, topics["events"], payloads)
    drain(bootstrap, consumer_group, topics["events"], len(payloads), worker)
    assert worker.thread.is_alive()

    # Still serving: one more event after the poison is scored too.
    produce(bootstrap, topics["events"], [event_payload(500)])
    drain(bootstrap, consumer_group, topics["events"], len(payloads) + 1, worker)
    worker.stop()

    predictions = [
        decode_prediction(r.value)
        for r in read_committed(bootstrap, topics["predictions"], at_least=len(good) + 1)
    ]
    expected = Counter(f"e-{i}" for i in (*range(120), 500))
    assert Counter(p.event_id for p in predictions) == expected

    letters = [
        decode_dead_letter(r.value) for r in read_committed(bootstrap, topics["dlq"], at_least=2)
    ]
    assert len(letters) == 2
    # The value leads with its event id (the 1 MB one is cut in the dead letter).
    assert sorted(letter.payload[:30] for letter in letters) == [
        orjson.dumps(poison[name])[:30] for name in ("huge", "large")
    ]
    for letter in letters:
        assert letter.kind == "invalid_field", letter.message
        assert "'user_id'" in letter.message
        assert "128" in letter.message
        assert letter.topic == topics["events"]
