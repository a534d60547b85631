"""Per-event transforms on tiny hand-made Arrow batches with known values."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from lakecast.errors import SchemaError
from lakecast.features.spec import (
    EVENT_FEATURE_COLUMNS,
    FEATURE_COLUMNS,
    FEATURES_VERSION,
)
from lakecast.features.transforms import (
    FeatureLookups,
    event_features,
    validate_event_batch,
    with_event_features,
)
from lakecast.features.vocab import CATEGORIES, COUNTRIES, DEVICES

MONDAY_6AM = datetime(2024, 1, 1, 6, 0, tzinfo=UTC)
SATURDAY_1830 = datetime(2024, 1, 6, 18, 30, tzinfo=UTC)


def _events(rows: list[dict[str, object]]) -> pa.Table:
    schema = pa.schema(
        [
            ("event_id", pa.string()),
            ("user_id", pa.string()),
            ("session_id", pa.string()),
            ("product_id", pa.string()),
            ("category", pa.string()),
            ("event_type", pa.string()),
            ("price", pa.float64()),
            ("device", pa.string()),
            ("country", pa.string()),
            ("ts", pa.timestamp("us", tz="UTC")),
        ]
    )
    base = {"user_id": "u1", "session_id": "s1", "product_id": "p1"}
    return pa.Table.from_pylist([{**base, **row} for row in rows], schema=schema)


@pytest.fixture
def batch() -> pa.Table:
    return _events(
        [
            {
                "event_id": "e0",
                "category": "books",
                "event_type": "view",
                "price": 9.0,
                "device": "mobile",
                "country": "US",
                "ts": MONDAY_6AM,
            },
            {
                "event_id": "e1",
                "category": "toys",
                "event_type": "cart",
                "price": float("nan"),
                "device": "smartwatch",
                "country": "XX",
                "ts": SATURDAY_1830,
            },
            {
                "event_id": "e2",
                "category": "spaceships",
                "event_type": "purchase",
                "price": 0.0,
                "device": None,
                "country": "DE",
                "ts": None,
            },
        ]
    )


LOOKUPS = FeatureLookups(category_mean_price={"books": 18.0, "toys": 0.0})


def test_columns_come_in_the_spec_order_as_float64(batch: pa.Table) -> None:
    features = event_features(batch, LOOKUPS)
    assert tuple(features) == EVENT_FEATURE_COLUMNS
    for values in features.values():
        assert values.dtype == np.float64
        assert values.shape == (3,)
        assert not np.isnan(values).any()


def test_price_features(batch: pa.Table) -> None:
    features = event_features(batch, LOOKUPS)
    assert features["log_price"].tolist() == [math.log1p(9.0), 0.0, 0.0]
    assert features["price_missing"].tolist() == [0.0, 1.0, 0.0]
    # books: 9 / 18; toys: NaN price (and a zero reference) -> neutral 1; unknown category -> 1
    assert features["price_to_category_mean"].tolist() == [0.5, 1.0, 1.0]


def test_time_features_are_cyclical_and_utc(batch: pa.Table) -> None:
    features = event_features(batch, LOOKUPS)
    hour_angle = 2 * math.pi * 18.5 / 24
    weekday_angle = 2 * math.pi * SATURDAY_1830.weekday() / 7
    expected = {
        "hour_sin": [math.sin(2 * math.pi * 6 / 24), math.sin(hour_angle), 0.0],
        "hour_cos": [math.cos(2 * math.pi * 6 / 24), math.cos(hour_angle), 0.0],
        "weekday_sin": [0.0, math.sin(weekday_angle), 0.0],
        "weekday_cos": [1.0, math.cos(weekday_angle), 0.0],
        "is_weekend": [0.0, 1.0, 0.0],
    }
    for name, values in expected.items():
        np.testing.assert_allclose(features[name], values, rtol=0, atol=1e-12, err_msg=name)


def test_one_hot_encodings_with_unknown_buckets(batch: pa.Table) -> None:
    features = event_features(batch, LOOKUPS)
    assert features["device_mobile"].tolist() == [1.0, 0.0, 0.0]
    assert features["device_unknown"].tolist() == [0.0, 1.0, 1.0]  # unseen and null
    assert features["country_us"].tolist() == [1.0, 0.0, 0.0]
    assert features["country_unknown"].tolist() == [0.0, 1.0, 0.0]
    assert features["country_de"].tolist() == [0.0, 0.0, 1.0]
    assert features["category_books"].tolist() == [1.0, 0.0, 0.0]
    assert features["category_toys"].tolist() == [0.0, 1.0, 0.0]
    assert features["event_view"].tolist() == [1.0, 0.0, 0.0]
    assert features["event_purchase"].tolist() == [0.0, 0.0, 1.0]
    device_block = np.stack([features[f"device_{d}"] for d in (*DEVICES, "unknown")])
    country_block = np.stack([features[f"country_{c.lower()}"] for c in (*COUNTRIES, "unknown")])
    category_block = np.stack([features[f"category_{c}"] for c in CATEGORIES])
    assert device_block.sum(axis=0).tolist() == [1.0, 1.0, 1.0]
    assert country_block.sum(axis=0).tolist() == [1.0, 1.0, 1.0]
    # an unknown category has no bucket: all zeros (and validation dead-letters it)
    assert category_block.sum(axis=0).tolist() == [1.0, 1.0, 0.0]


def test_without_lookups_every_ratio_is_neutral(batch: pa.Table) -> None:
    assert event_features(batch)["price_to_category_mean"].tolist() == [1.0, 1.0, 1.0]


def test_same_values_whatever_the_chunking_and_time_unit(batch: pa.Table) -> None:
    whole = event_features(batch, LOOKUPS)
    chunked = pa.concat_tables([batch.slice(0, 1), batch.slice(1)])
    assert chunked.column("price").num_chunks == 2
    millis = batch.set_column(
        batch.schema.get_field_index("ts"),
        "ts",
        batch.column("ts").cast(pa.timestamp("ms", tz="UTC")),
    )
    for other in (
        event_features(chunked, LOOKUPS),
        event_features(millis.to_batches()[0], LOOKUPS),
    ):
        for name in EVENT_FEATURE_COLUMNS:
            np.testing.assert_array_equal(other[name], whole[name], err_msg=name)


def test_with_event_features_appends_the_columns(batch: pa.Table) -> None:
    out = with_event_features(batch, LOOKUPS)
    assert out.schema.names == [*batch.schema.names, *EVENT_FEATURE_COLUMNS]
    assert out.column("event_id").to_pylist() == ["e0", "e1", "e2"]
    assert out.column("log_price").to_pylist()[0] == math.log1p(9.0)


def test_validation_flags_each_bad_row_with_its_reason(batch: pa.Table) -> None:
    problems = validate_event_batch(batch)
    assert problems[0] is None
    assert problems[1] is not None
    assert problems[1].kind == "invalid_price"
    assert "'e1'" in problems[1].message
    assert problems[2] is not None
    assert problems[2].kind == "unknown_category"
    assert "'spaceships'" in problems[2].message


def test_validation_flags_missing_ids_types_and_times() -> None:
    rows = _events(
        [
            {
                "event_id": "a",
                "category": "home",
                "event_type": "click",
                "price": 1.0,
                "ts": MONDAY_6AM,
            },
            {"event_id": "b", "category": "home", "event_type": "view", "price": 1.0, "ts": None},
            {
                "event_id": "c",
                "category": "home",
                "event_type": "view",
                "price": -2.0,
                "ts": MONDAY_6AM,
            },
            {
                "event_id": "d",
                "category": None,
                "event_type": "view",
                "price": 1.0,
                "ts": MONDAY_6AM,
            },
        ]
    )
    rows = rows.set_column(1, "user_id", pa.array(["u", "u", "u", ""]))
    kinds = [problem.kind if problem else None for problem in validate_event_batch(rows)]
    assert kinds == ["unknown_event_type", "missing_ts", "invalid_price", "missing_user_id"]


def test_a_missing_column_is_a_schema_error(batch: pa.Table) -> None:
    with pytest.raises(SchemaError, match="'device'"):
        event_features(batch.drop_columns(["device"]))


def test_feature_spec_is_unique_and_versioned() -> None:
    assert len(set(FEATURE_COLUMNS)) == len(FEATURE_COLUMNS)
    assert FEATURE_COLUMNS[: len(EVENT_FEATURE_COLUMNS)] == EVENT_FEATURE_COLUMNS
    revision, _, digest = FEATURES_VERSION.partition(".")
    assert revision.isdigit()
    assert len(digest) == 8
