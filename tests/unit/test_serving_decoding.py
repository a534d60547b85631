"""Classifying bad ``events`` records: every kind of bad input gets its own DLQ kind."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
import pytest

from lakecast.kafka.batch import BatchResult, OutputRecord
from lakecast.kafka.poison import _run_batch
from lakecast.kafka.serde import MAX_KEY_BYTES
from lakecast.serving import decoding
from lakecast.serving.decoding import (
    EVENT_SCHEMA,
    RejectedRecord,
    decode_event_record,
    decode_records,
    events_table,
)
from lakecast.testing.events import event_value


def encoded(**overrides: object) -> bytes:
    return orjson.dumps(event_value(7, **overrides))


@pytest.mark.parametrize(
    ("value", "kind", "named"),
    [
        (None, "malformed_json", "tombstone"),
        (b"{not json", "malformed_json", "JSON"),
        (b"[1, 2]", "malformed_json", "list"),
        (orjson.dumps({"event_id": "e-1"}), "missing_field", "'user_id'"),
        (encoded(price="12"), "invalid_field", "'price'"),
        (encoded(price=-1.0), "invalid_field", "'price'"),
        (encoded(event_type="click"), "invalid_field", "'event_type'"),
        (encoded(ts="yesterday"), "invalid_field", "'ts'"),
        (encoded(ts="2024-05-01T10:00:00"), "invalid_field", "offset"),
        (encoded().replace(b'"price":', b'"price":NaN,"p":'), "non_finite", "'price'"),
        (encoded().replace(b'"price":', b'"price":Infinity,"p":'), "non_finite", "'price'"),
        (encoded(session_id="s" * 3_000), "oversized", "over the limit of 2048"),
        (encoded(user_id="u" * 1_000), "invalid_field", "'user_id' is 1000 characters"),
        (encoded(price=1e12), "invalid_field", "'price'"),
        (encoded(ts="1970-01-01T00:00:00Z"), "invalid_field", "'ts'"),
        (b"[" * 1_025 + b"]" * 1_000, "too_deep", "deeper than 1024"),
    ],
)
def test_each_bad_record_gets_its_kind_and_a_message_naming_the_problem(
    value: bytes | None, kind: str, named: str
) -> None:
    with pytest.raises(RejectedRecord) as caught:
        decode_event_record(value, max_bytes=2_048)
    assert caught.value.kind == kind
    assert named in str(caught.value)


def test_a_good_record_decodes_and_becomes_an_arrow_row() -> None:
    event = decode_event_record(encoded(price=19.5))
    assert event.event_id == "e-7"
    assert event.price == 19.5
    assert event.ts.tzinfo is not None
    table = events_table([event, decode_event_record(encoded(event_id="e-8"))])
    assert table.schema == EVENT_SCHEMA
    assert table.column("event_id").to_pylist() == ["e-7", "e-8"]
    assert table.column("ts").to_pylist()[0] == event.ts.astimezone(UTC)
    assert isinstance(table.column("ts").to_pylist()[0], datetime)


def test_an_unknown_category_passes_decoding_for_the_feature_gate_to_refuse() -> None:
    # The category vocabulary is the feature code's to check (validate_event_batch).
    assert decode_event_record(encoded(category="spaceships")).category == "spaceships"


class Record(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def _records(values: list[tuple[bytes | None, bytes | None]]) -> list[Any]:
    return [Record("events", 0, i, key, value) for i, (key, value) in enumerate(values)]


def test_the_record_key_is_bounded_too() -> None:
    records = _records([(b"k" * MAX_KEY_BYTES, encoded()), (b"k" * (MAX_KEY_BYTES + 1), encoded())])
    kept, events, dead = decode_records(records)
    assert [r.offset for r in kept] == [0]
    assert len(events) == 1
    assert [(d.record.offset, d.kind) for d in dead] == [(1, "invalid_field")]
    assert "'<key>'" in dead[0].message
    assert f"limit of {MAX_KEY_BYTES}" in dead[0].message


DEEP = {
    "array": b"[" * 50_000 + b"]" * 50_000,  # 100 KB
    "object": b'{"a":' * 20_000 + b"1" + b"}" * 20_000,
    "unclosed": b"[" * 100_000,
    "in_an_event": encoded()[:-1] + b',"x":' + b"[" * 2_000 + b"]" * 2_000 + b"}",
    "with_nan": b"[" * 2_000 + b"NaN" + b"]" * 2_000,
}


@pytest.mark.parametrize("name", sorted(DEEP))
def test_deep_json_is_too_deep_on_the_fast_path_without_the_lenient_reader(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def recursing(value: bytes) -> object:
        raise AssertionError("the lenient reader ran on a too-deep value")

    monkeypatch.setattr(decoding.json, "loads", recursing)
    with pytest.raises(RejectedRecord) as caught:
        decode_event_record(DEEP[name], max_bytes=1_000_000)
    assert caught.value.kind == "too_deep"


def test_the_lenient_reader_survives_deep_input_that_orjson_does_not_find_too_deep() -> None:
    # A NaN token makes orjson fail before any depth limit; json.loads then recurses.
    value = b"[" * 10 + b"NaN," + b"[" * 100_000
    with pytest.raises(RejectedRecord) as caught:
        decode_event_record(value, max_bytes=1_000_000)
    assert caught.value.kind == "malformed_json"


class _Delivery:
    def __init__(self) -> None:
        self.producer = self
        self.sent: list[str] = []

    def send(self, topic: str, **_: Any) -> None:
        self.sent.append(topic)

    def begin(self) -> None: ...

    def commit(self, offsets: Any, sent: Any) -> None: ...


def test_a_batch_holding_deep_json_is_not_isolated() -> None:
    # One too-deep record per batch used to raise RecursionError out of process, and every
    # batch holding one was processed again one record at a time.
    def process(records: list[Any]) -> BatchResult:
        kept, events, dead = decode_records(records)
        outputs = [
            OutputRecord("out", e.event_id.encode(), None, (), r)
            for r, e in zip(kept, events, strict=True)
        ]
        return BatchResult(outputs, list(dead))

    values = [(b"u", encoded(event_id=f"e-{i}")) for i in range(20)]
    values[7] = (b"u", DEEP["array"])
    values[13] = (b"u", DEEP["object"])
    delivery = _Delivery()
    report = _run_batch(delivery, process, _records(values), "dlq", 1_048_576)  # type: ignore[arg-type]
    assert not report.isolated
    assert report.dead_letter_kinds == ("too_deep", "too_deep")
    assert report.outputs == 18
    assert sorted(delivery.sent) == ["dlq"] * 2 + ["out"] * 18
