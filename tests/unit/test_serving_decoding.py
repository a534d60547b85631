"""Classifying bad ``events`` records: every kind of bad input gets its own DLQ kind."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from lakecast.serving.decoding import (
    EVENT_SCHEMA,
    RejectedRecord,
    decode_event_record,
    events_table,
)
from lakecast.serving.testing import event_value


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
