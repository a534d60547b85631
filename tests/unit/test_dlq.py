"""Dead-letter values follow the contract and keep the original bytes."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import NamedTuple

import orjson
import pytest

from lakecast.errors import InvalidRecordError
from lakecast.kafka import dlq, serde
from lakecast.kafka.dlq import DeadLetter


class Record(NamedTuple):
    """The fields of kafka-python's ConsumerRecord that a dead letter reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def test_value_follows_the_contract() -> None:
    record = Record("events", 3, 1_234, b"u-1", b"\x00not json")
    letter = DeadLetter(record, kind="InvalidRecordError", message="bad")
    now = datetime(2024, 5, 1, 12, tzinfo=UTC)
    value = orjson.loads(dlq.dead_letter_value(letter, now=now))
    assert value == {
        "error": {"kind": "InvalidRecordError", "message": "bad"},
        "source": {"topic": "events", "partition": 3, "offset": 1_234},
        "payload_b64": base64.b64encode(b"\x00not json").decode(),
        "ts": "2024-05-01T12:00:00Z",
    }


def test_from_exception_names_kind_and_field() -> None:
    record = Record("events", 0, 5, None, b"{}")
    with pytest.raises(InvalidRecordError) as caught:
        serde.decode_event(record.value)
    letter = DeadLetter.from_exception(record, caught.value)
    assert letter.kind == "InvalidRecordError"
    assert "'event_id'" in letter.message
    assert DeadLetter.from_exception(record, RuntimeError()).message == "RuntimeError()"


def test_round_trip_through_decode() -> None:
    record = Record("events", 1, 9, b"k", b'{"x": 1}')
    decoded = dlq.decode_dead_letter(
        dlq.dead_letter_value(DeadLetter(record, "ValueError", "model failed"))
    )
    assert (decoded.topic, decoded.partition, decoded.offset) == ("events", 1, 9)
    assert decoded.payload == b'{"x": 1}'
    assert decoded.kind == "ValueError"
    assert decoded.message == "model failed"
    assert not decoded.truncated


def test_huge_payload_is_cut_and_flagged() -> None:
    payload = b"z" * (dlq.MAX_PAYLOAD_BYTES + 10)
    letter = DeadLetter(Record("events", 0, 1, None, payload), "InvalidRecordError", "too big")
    raw = dlq.dead_letter_value(letter)
    value = orjson.loads(raw)
    assert value["payload_truncated"] is True
    assert value["payload_size"] == len(payload)
    assert len(base64.b64decode(value["payload_b64"])) == dlq.MAX_PAYLOAD_BYTES
    assert len(raw) < 1_000_000


def test_null_payload_is_flagged() -> None:
    value = orjson.loads(dlq.dead_letter_value(DeadLetter(Record("t", 0, 1, b"k", None), "X", "y")))
    assert value["payload_b64"] == ""
    assert value["payload_null"] is True


def test_decode_each_splits_good_and_bad() -> None:
    good_raw = orjson.dumps(
        {
            "event_id": "e",
            "user_id": "u",
            "session_id": "s",
            "product_id": "p",
            "category": "c",
            "event_type": "view",
            "price": 1,
            "device": "d",
            "country": "FR",
            "ts": "2024-05-01T00:00:00Z",
        }
    )
    records = [
        Record("events", 0, i, None, raw) for i, raw in enumerate([good_raw, b"nope", good_raw])
    ]
    good, bad = dlq.decode_each(records, serde.decode_event)
    assert [record.offset for record, _ in good] == [0, 2]
    assert [letter.record.offset for letter in bad] == [1]
    assert bad[0].kind == "InvalidRecordError"


def test_decode_dead_letter_missing_field() -> None:
    with pytest.raises(InvalidRecordError, match="decode dead letter"):
        dlq.decode_dead_letter(b'{"error": {"kind": "x"}}')


def test_a_dead_letter_fits_the_producer_whatever_the_input() -> None:
    # A 1 MB key and a 1 MB value: the letter keeps neither whole, and says so.
    record = Record("events", 0, 5, b"k" * 1_000_000, b"v" * 1_000_000)
    letter = DeadLetter(record, kind="oversized", message="m" * 10_000)
    assert dlq.dead_letter_key(letter) is None
    value = dlq.dead_letter_value(letter)
    assert len(value) < 1_048_576 - 1_000
    data = orjson.loads(value)
    assert data["key_omitted"] is True
    assert data["key_size"] == 1_000_000
    assert data["payload_truncated"] is True
    small = DeadLetter(Record("events", 0, 6, b"u-1", b"{}"), kind="k", message="m")
    assert dlq.dead_letter_key(small) == b"u-1"
    assert "key_omitted" not in orjson.loads(dlq.dead_letter_value(small))


def test_a_dead_letter_without_its_payload_says_how_large_it_was() -> None:
    letter = DeadLetter(Record("events", 0, 5, b"u-1", b"v" * 700), kind="k", message="m")
    value = dlq.dead_letter_value(letter, with_payload=False)
    data = orjson.loads(value)
    assert (data["payload_b64"], data["payload_omitted"], data["payload_size"]) == ("", True, 700)
    decoded = dlq.decode_dead_letter(value)
    assert decoded.truncated
    assert decoded.payload == b""
