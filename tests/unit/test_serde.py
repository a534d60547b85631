"""The topic contracts: encode and decode round trips, and every bad input names its field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from lakecast.errors import DataError, InvalidRecordError
from lakecast.kafka import serde
from lakecast.kafka.serde import ModelRef, Prediction


def _event(**changes: object) -> dict[str, object]:
    event: dict[str, object] = {
        "event_id": "e-1",
        "user_id": "u-42",
        "session_id": "s-7",
        "product_id": "p-9",
        "category": "books",
        "event_type": "cart",
        "price": 12.5,
        "device": "mobile",
        "country": "FR",
        "ts": "2024-05-01T10:00:00Z",
    }
    event.update(changes)
    return {k: v for k, v in event.items() if v is not _DROP}


_DROP = object()


def test_event_round_trip_keeps_every_field() -> None:
    raw = orjson.dumps(_event())
    decoded = serde.decode_event(raw)
    assert decoded.user_id == "u-42"
    assert decoded.price == 12.5
    assert decoded.ts == datetime(2024, 5, 1, 10, tzinfo=UTC)
    again = serde.decode_event(serde.encode_event(decoded))
    assert again == decoded
    assert orjson.loads(serde.encode_event(decoded))["ts"] == "2024-05-01T10:00:00Z"


def test_every_field_lands_in_its_own_attribute() -> None:
    # The well-formed fast path builds the event positionally: each field has a distinct
    # value here, so a field in the wrong place shows.
    sent = _event()
    decoded = serde.event_from_dict(sent)
    got = decoded.to_dict()
    assert got.pop("ts") == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert got == {name: value for name, value in sent.items() if name != "ts"}


def test_event_ts_with_offset_is_converted_to_utc() -> None:
    decoded = serde.decode_event(orjson.dumps(_event(ts="2024-05-01T12:00:00+02:00")))
    assert decoded.ts == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert decoded.ts.utcoffset() == timedelta(0)


def test_event_integer_price_is_accepted_as_float() -> None:
    decoded = serde.decode_event(orjson.dumps(_event(price=3)))
    assert decoded.price == 3.0
    assert isinstance(decoded.price, float)


def test_event_extra_fields_are_ignored() -> None:
    decoded = serde.decode_event(orjson.dumps(_event(referrer="ad")))
    assert decoded.event_id == "e-1"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"user_id": _DROP}, "user_id"),
        ({"user_id": None}, "user_id"),
        ({"user_id": 42}, "user_id"),
        ({"session_id": ""}, "session_id"),
        ({"event_type": "click"}, "event_type"),
        ({"price": "12"}, "price"),
        ({"price": True}, "price"),
        ({"price": -1.0}, "price"),
        ({"ts": "yesterday"}, "ts"),
        ({"ts": "2024-05-01T10:00:00"}, "ts"),
        ({"ts": 1714557600}, "ts"),
    ],
)
def test_bad_event_field_is_named(changes: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidRecordError) as caught:
        serde.decode_event(orjson.dumps(_event(**changes)))
    assert caught.value.field == field
    assert repr(field) in str(caught.value)
    assert isinstance(caught.value, DataError)


def test_non_finite_price_is_refused() -> None:
    with pytest.raises(InvalidRecordError) as caught:
        serde.event_from_dict(_event(price=float("nan")))
    assert caught.value.field == "price"
    # orjson itself refuses NaN and overflowing literals in the bytes.
    for literal in (b"NaN", b"1e999"):
        raw = orjson.dumps(_event(price=1.5)).replace(b"1.5", literal)
        with pytest.raises(InvalidRecordError):
            serde.decode_event(raw)


@pytest.mark.parametrize(
    ("raw", "found"),
    [
        (b"{not json", "not valid UTF-8 JSON"),
        (b"\xff\xfe", "not valid UTF-8 JSON"),
        (b"[1, 2]", "found list"),
        (b'"text"', "found str"),
        (None, "tombstone"),
    ],
)
def test_value_that_is_not_a_json_object_is_refused(raw: bytes | None, found: str) -> None:
    with pytest.raises(InvalidRecordError) as caught:
        serde.decode_event(raw)
    assert caught.value.field == "<value>"
    assert found in str(caught.value)


def test_size_limit_applies_before_parsing() -> None:
    raw = orjson.dumps(_event(category="x" * 2_000))
    with pytest.raises(InvalidRecordError, match=f"{len(raw)} bytes is over the limit of 1000"):
        serde.decode_event(raw, max_bytes=1_000)
    with pytest.raises(InvalidRecordError, match="over the limit"):
        serde.encode_json({"blob": "y" * 50}, max_bytes=10)


def test_encode_event_validates_a_mapping() -> None:
    with pytest.raises(InvalidRecordError) as caught:
        serde.encode_event(_event(event_type="refund"))
    assert caught.value.field == "event_type"


def test_key_round_trip_and_bad_key() -> None:
    assert serde.decode_key(serde.encode_key("u-é")) == "u-é"
    assert serde.encode_key(None) is None
    with pytest.raises(InvalidRecordError) as caught:
        serde.decode_key(b"\xff")
    assert caught.value.field == "<key>"


def test_prediction_round_trip() -> None:
    prediction = Prediction(
        event_id="e-1",
        user_id="u-42",
        ts=datetime(2024, 5, 1, 10, tzinfo=timezone(timedelta(hours=2))),
        score=0.75,
        model=ModelRef(name="ctr", version="1.2.0", sha256="ab" * 32),
        variant="champion",
        experiment=None,
        latency_ms=3.5,
        features_version=4,
    )
    decoded = serde.decode_prediction(serde.encode_prediction(prediction))
    assert decoded == Prediction(
        **{
            **prediction.to_dict(),
            "model": prediction.model,
            "ts": datetime(2024, 5, 1, 8, tzinfo=UTC),
        }
    )
    raw = orjson.loads(serde.encode_prediction(prediction))
    assert raw["model"] == {"name": "ctr", "version": "1.2.0", "sha256": "ab" * 32}


def test_prediction_with_nan_score_is_refused() -> None:
    prediction = Prediction(
        "e",
        "u",
        datetime.now(UTC),
        float("nan"),
        ModelRef("m", "1.0.0", "0" * 64),
        "champion",
        None,
        1.0,
        None,
    )
    with pytest.raises(InvalidRecordError) as caught:
        serde.encode_prediction(prediction)
    assert caught.value.field == "score"


def test_metric_envelope() -> None:
    ts = datetime(2024, 5, 1, tzinfo=UTC)
    raw = serde.encode_metric("sample", "worker-1", ts, {"events_per_s": 120.0})
    decoded = serde.decode_metric(raw)
    assert decoded == {"kind": "sample", "source": "worker-1", "ts": ts, "events_per_s": 120.0}
    with pytest.raises(InvalidRecordError) as caught:
        serde.encode_metric("gossip", "w", ts, {})
    assert caught.value.field == "kind"
    with pytest.raises(InvalidRecordError) as caught:
        serde.encode_metric("sample", "w", ts, {"ts": 1})
    assert caught.value.field == "ts"


# ---- the bounds of the events contract (issue 13: one unbounded field stalled a partition) --

_STRINGS = ("event_id", "user_id", "session_id", "product_id", "category", "device", "country")


@pytest.mark.parametrize("name", _STRINGS)
def test_every_string_field_is_bounded_and_the_bound_is_named(name: str) -> None:
    at_limit = serde.event_from_dict(_event(**{name: "x" * serde.MAX_STRING_CHARS}))
    assert getattr(at_limit, name) == "x" * serde.MAX_STRING_CHARS
    with pytest.raises(InvalidRecordError) as caught:
        serde.event_from_dict(_event(**{name: "x" * (serde.MAX_STRING_CHARS + 1)}))
    assert caught.value.field == name
    assert f"{serde.MAX_STRING_CHARS + 1} characters" in str(caught.value)
    assert f"limit of {serde.MAX_STRING_CHARS}" in str(caught.value)


def test_a_megabyte_user_id_is_refused_before_it_can_make_an_unsendable_output() -> None:
    with pytest.raises(InvalidRecordError) as caught:
        serde.decode_event(orjson.dumps(_event(user_id="u" * 999_000)))
    assert caught.value.field == "user_id"
    assert "999000 characters" in str(caught.value)


@pytest.mark.parametrize(
    ("price", "accepted"),
    [(0, True), (serde.MAX_PRICE, True), (serde.MAX_PRICE * 1.0001, False), (-0.01, False)],
)
def test_price_is_bounded_on_both_sides(price: float, accepted: bool) -> None:
    if accepted:
        assert serde.event_from_dict(_event(price=price)).price == price
        return
    with pytest.raises(InvalidRecordError) as caught:
        serde.event_from_dict(_event(price=price))
    assert caught.value.field == "price"
    assert f"[0, {serde.MAX_PRICE:g}]" in str(caught.value)


def test_ts_window_is_2000_to_a_day_past_the_clock() -> None:
    now = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    latest = serde.latest_event_ts(now)
    assert latest == now + timedelta(days=1)
    for ok in ("2000-01-01T00:00:00Z", "2026-01-16T12:00:00Z", "2026-01-16T13:00:00+01:00"):
        assert serde.event_from_dict(_event(ts=ok), latest=latest).ts <= latest
    for bad in ("1999-12-31T23:59:59Z", "1970-01-01T00:00:00Z", "2026-01-16T12:00:01Z"):
        with pytest.raises(InvalidRecordError) as caught:
            serde.event_from_dict(_event(ts=bad), latest=latest)
        assert caught.value.field == "ts"
        assert "2000-01-01" in str(caught.value)
        assert latest.isoformat() in str(caught.value)


def test_ts_without_latest_is_checked_against_the_clock() -> None:
    soon = datetime.now(UTC) + timedelta(hours=23)
    later = datetime.now(UTC) + timedelta(hours=25)
    assert serde.event_from_dict(_event(ts=soon.isoformat())).ts == soon
    with pytest.raises(InvalidRecordError, match="'ts'"):
        serde.event_from_dict(_event(ts=later.isoformat()))


@pytest.mark.parametrize(
    "changes",
    [
        {"user_id": "u" * 129},
        {"country": "F" * 129},
        {"price": 2e9},
        {"ts": "1999-01-01T00:00:00Z"},
        {"ts": "2999-01-01T00:00:00Z"},
    ],
)
def test_the_one_pass_check_agrees_with_the_field_by_field_one(changes: dict[str, object]) -> None:
    # The fast path must not accept what the naming checks refuse (nor the reverse).
    latest = serde.latest_event_ts()
    assert serde._well_formed_event(_event(**changes), latest) is None
    assert serde._well_formed_event(_event(), latest) is not None
    with pytest.raises(InvalidRecordError):
        serde.event_from_dict(_event(**changes), latest=latest)


@pytest.mark.parametrize(
    "ts", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "9999-12-31T23:30:00-00:31"]
)
def test_a_ts_that_overflows_in_utc_is_an_invalid_field_not_a_crash(ts: str) -> None:
    with pytest.raises(InvalidRecordError, match="out of range in UTC") as info:
        serde.event_from_dict(_event(ts=ts))
    assert info.value.field == "ts"
