"""The online path: snapshot lookups and the full feature matrix, on hand-made Arrow rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from lakecast.errors import SchemaError
from lakecast.features.online import online_feature_matrix, online_features
from lakecast.features.snapshot import EntitySnapshot, snapshot_from_arrow
from lakecast.features.spec import (
    CONVERSION_PRIOR_RATE,
    ENTITY_FEATURE_COLUMNS,
    FEATURE_COLUMNS,
    FEATURES_VERSION,
    RECENCY_CAP_S,
    USER_COUNT_COLUMNS,
)
from lakecast.features.training_set import feature_matrix
from lakecast.features.transforms import event_features
from lakecast.lake.tables import ENTITY_FEATURES
from lakecast.testing.events import make_events

AS_OF = datetime(2024, 3, 5, tzinfo=UTC)
LAST_U1 = AS_OF - timedelta(minutes=20)


def _snapshot_rows() -> pa.Table:
    base: dict[str, Any] = {"as_of": AS_OF, "features_version": FEATURES_VERSION,
                            "snapshot_date": AS_OF.date() - timedelta(days=1)}  # fmt: skip
    user = {
        **base,
        "entity_type": "user",
        "entity_id": "u1",
        **{name: float(i + 1) for i, name in enumerate(USER_COUNT_COLUMNS)},
        "user_last_event_ts": LAST_U1,
        "user_count_7d_books": 3.0,
        "user_count_7d_toys": 1.0,
    }
    product = {**base, "entity_type": "product", "entity_id": "p1", "product_views_7d": 8.0,
               "product_purchases_7d": 2.0, "product_conversion_7d": 0.1}  # fmt: skip
    category = {**base, "entity_type": "category", "entity_id": "books",
                "category_mean_price_7d": 20.0}  # fmt: skip
    return pa.Table.from_pylist([user, product, category], schema=ENTITY_FEATURES.arrow_schema())


@pytest.fixture
def snapshot() -> EntitySnapshot:
    return snapshot_from_arrow(_snapshot_rows(), table_version=3)


@pytest.fixture
def batch() -> pa.Table:
    return make_events(
        [
            {"event_id": "e1", "user_id": "u1", "product_id": "p1",
             "ts": AS_OF + timedelta(seconds=100)},
            {"event_id": "e2", "user_id": "new", "product_id": "new", "ts": AS_OF, "price": 30.0},
            {"event_id": "e3", "user_id": "u1", "product_id": "p1", "category": "spaceships",
             "ts": LAST_U1 - timedelta(hours=1)},
        ]
    )  # fmt: skip


def test_snapshot_indexes_users_products_and_category_prices(snapshot: EntitySnapshot) -> None:
    assert snapshot.table_version == 3
    assert snapshot.snapshot_date == AS_OF.date() - timedelta(days=1)
    assert snapshot.as_of == AS_OF
    assert snapshot.features_version == FEATURES_VERSION
    assert snapshot.lookups.category_mean_price == {"books": 20.0}


def test_entity_features_from_the_snapshot(snapshot: EntitySnapshot, batch: pa.Table) -> None:
    columns = snapshot.entity_features(batch)
    assert tuple(columns) == ENTITY_FEATURE_COLUMNS
    expected_counts = [float(i + 1) for i in range(len(USER_COUNT_COLUMNS))]
    for i, name in enumerate(USER_COUNT_COLUMNS):
        assert columns[name].tolist() == [expected_counts[i], 0.0, expected_counts[i]], name
    events_7d = expected_counts[USER_COUNT_COLUMNS.index("user_events_7d")]
    # recency from the user's last event; an unknown user gets the cap; an event older than
    # the snapshot's last event is clipped at zero
    assert columns["user_recency_s"].tolist() == [1200.0 + 100.0, RECENCY_CAP_S, 0.0]
    # books share of u1's 7-day events; unknown user and unknown category give 0
    assert columns["user_category_share_7d"].tolist() == [3.0 / events_7d, 0.0, 0.0]
    assert columns["product_views_7d"].tolist() == [8.0, 0.0, 8.0]
    assert columns["product_conversion_7d"].tolist() == [0.1, CONVERSION_PRIOR_RATE, 0.1]


def test_online_matrix_is_event_then_entity_features_in_spec_order(
    snapshot: EntitySnapshot, batch: pa.Table
) -> None:
    matrix = online_feature_matrix(batch, snapshot)
    assert matrix.shape == (3, len(FEATURE_COLUMNS))
    expected = {**event_features(batch, snapshot.lookups), **snapshot.entity_features(batch)}
    for position, name in enumerate(FEATURE_COLUMNS):
        np.testing.assert_array_equal(matrix[:, position], expected[name], err_msg=name)
    assert online_features(batch, snapshot)["price_to_category_mean"].tolist() == [0.5, 1.5, 1.0]


def test_an_empty_snapshot_gives_defaults(batch: pa.Table) -> None:
    columns = EntitySnapshot().entity_features(batch)
    assert columns["user_events_7d"].tolist() == [0.0, 0.0, 0.0]
    assert columns["user_recency_s"].tolist() == [RECENCY_CAP_S] * 3
    assert columns["product_conversion_7d"].tolist() == [CONVERSION_PRIOR_RATE] * 3
    assert online_feature_matrix(batch.slice(0, 0), EntitySnapshot()).shape == (
        0,
        len(FEATURE_COLUMNS),
    )


def test_snapshot_rows_without_the_aggregates_are_refused() -> None:
    with pytest.raises(SchemaError, match="product_views_7d"):
        snapshot_from_arrow(_snapshot_rows().drop_columns(["product_views_7d"]))


def test_feature_matrix_refuses_rows_of_another_features_version() -> None:
    row = {name: 1.0 for name in FEATURE_COLUMNS}
    good = pa.Table.from_pylist([{**row, "features_version": FEATURES_VERSION}])
    assert feature_matrix(good).tolist() == [[1.0] * len(FEATURE_COLUMNS)]
    with pytest.raises(SchemaError, match=r"0\.deadbeef"):
        feature_matrix(pa.Table.from_pylist([{**row, "features_version": "0.deadbeef"}]))
    with pytest.raises(SchemaError, match="log_price"):
        feature_matrix(good.drop_columns(["log_price"]))
