"""The loop against a real broker: an output that cannot be produced dead-letters its input.

Four kinds of unproducible output sit in one stream of good ones: over the producer's
``max_request_size`` with and without a source (checked before the transaction, or found by
splitting the batch after kafka-python refused it in ``send``), over the output topic's
``max.message.bytes`` (the broker refuses it inside the transaction) and a value that is not
bytes. Each input must become exactly one dead letter, every other input exactly one output,
and the loop must go on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from kafka.consumer.fetcher import ConsumerRecord

from lakecast.kafka.batch import BatchResult, OutputRecord
from lakecast.kafka.clients import DeliveryMode
from lakecast.kafka.dlq import decode_dead_letter
from lakecast.testing.clock import wait_for
from lakecast.testing.kafka import committed_total, produce, read_committed
from tests.integration.test_kafka_loop import TIMEOUT_S, Worker

TOPIC_MAX_MESSAGE_BYTES = 50_000
# The input index -> (output size in bytes, whether the output names its source, kind).
POISON: dict[int, tuple[int, bool, str]] = {
    10: (2_000_000, True, "output_too_large"),  # over max_request_size: before the transaction
    25: (200_000, True, "output_too_large"),  # over the topic's limit: the broker refuses it
    40: (2_000_000, False, "output_too_large"),  # no source: kafka-python refuses it in send
    50: (-1, False, "output_rejected"),  # a str, not bytes: send raises TypeError
}


def sized_process(out_topic: str) -> Callable[[list[ConsumerRecord]], BatchResult]:
    """One output per input, of the size and kind POISON says (else a small one)."""

    def process(records: list[ConsumerRecord]) -> BatchResult:
        outputs = []
        for record in records:
            i = orjson.loads(record.value)["i"]
            size, sourced, _ = POISON.get(i, (10, True, ""))
            value: Any = orjson.dumps({"i": i, "pad": "x" * max(size, 0)})
            if size < 0:
                value = value.decode()
            outputs.append(OutputRecord(out_topic, value, None, (), record if sourced else None))
        return BatchResult(outputs)

    return process


@pytest.mark.parametrize("mode", ["exactly_once", "at_least_once"])
def test_each_unproducible_output_is_one_dead_letter_and_the_loop_goes_on(
    bootstrap: str, topic_factory: Callable[..., str], consumer_group: str, mode: DeliveryMode
) -> None:
    """At least once, a split batch's good outputs may be sent again (never lost): the
    outputs are compared as sets there, as counts exactly once."""
    events = topic_factory("events", 2)
    out = topic_factory("out", 2, max_message_bytes=TOPIC_MAX_MESSAGE_BYTES)
    dlq_topic = topic_factory("dlq")
    inputs = 60
    produce(bootstrap, events, ((b"k", orjson.dumps({"i": i})) for i in range(inputs)))
    worker = Worker(
        bootstrap, consumer_group, sized_process(out), topic=events, dlq_topic=dlq_topic, mode=mode
    )

    def committed(total: int) -> Callable[[], bool]:
        def done() -> bool:
            if worker.error is not None:
                raise worker.error
            return committed_total(bootstrap, consumer_group, events) >= total

        return done

    wait_for(committed(inputs), timeout_s=TIMEOUT_S * 2, what="the poisoned input")
    produce(bootstrap, events, [(b"k", orjson.dumps({"i": inputs}))])  # still serving
    wait_for(committed(inputs + 1), timeout_s=TIMEOUT_S, what="one more input")
    stats = worker.join()

    outputs = read_committed(bootstrap, out, at_least=inputs + 1 - len(POISON))
    served = Counter(orjson.loads(r.value)["i"] for r in outputs)
    expected = Counter(i for i in range(inputs + 1) if i not in POISON)
    letters = [
        decode_dead_letter(r.value)
        for r in read_committed(bootstrap, dlq_topic, at_least=len(POISON))
    ]
    got = {orjson.loads(letter.payload)["i"]: letter for letter in letters}
    if mode == "exactly_once":
        assert served == expected
        assert len(letters) == len(POISON)
    else:
        assert set(served) == set(expected)
    assert {i: letter.kind for i, letter in got.items()} == {i: p[2] for i, p in POISON.items()}
    assert "max_request_size" in got[10].message
    assert "MessageSizeTooLargeError" in got[25].message
    assert "TypeError" in got[50].message
    assert stats.split >= 1  # 25, 40 and 50 were found by splitting their batch
    assert stats.records == inputs + 1
