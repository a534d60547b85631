"""Point-in-time entity features, labels and the online snapshot on a hand-made event table.

The scenario (T0 = 2024-03-04 12:00 UTC, the run date D = 2024-03-04):

    user u1: a  T0-2d    view     p1 books  10  session s0
             b  T0-2h    purchase p1 books  20  session s0b
             c  T0-30m   cart     p2 toys   30  session s1
             x  T0       view     p1 books  10  session s1   <- the labelled event
             y  T0       cart     p1 books  10  session s1   (same ts as x: a tie)
             f  T0+10m   purchase p1 books  5000 session s1  <- the planted future purchase
    user u2: g  T0-8d    view     p1 books  (outside every window)
             h  T0-1h    view     p1 books  (exactly on the 1 h boundary: inside)
             i  T0       view     p3 electronics
    user u3: late view at 23:50 on D, purchase at 00:10 on D+1, same session
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from lakecast.features.aggregates import daily_category_totals, entity_snapshot
from lakecast.features.pit import point_in_time_features
from lakecast.features.snapshot import load_snapshot
from lakecast.features.spec import (
    CONVERSION_PRIOR_RATE,
    CONVERSION_PRIOR_WEIGHT,
    ENTITY_FEATURE_COLUMNS,
    RECENCY_CAP_S,
)
from lakecast.features.training_set import with_purchase_labels
from lakecast.lake.delta import replace_partitions
from lakecast.lake.tables import ENTITY_FEATURES
from lakecast.testing.events import make_events

T0 = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)
D = date(2024, 3, 4)
H, M, DAY = timedelta(hours=1), timedelta(minutes=1), timedelta(days=1)


def _rows() -> list[dict[str, Any]]:
    def ev(event_id: str, user: str, ts: datetime, kind: str, product: str, **more: Any) -> dict:
        return {"event_id": event_id, "user_id": user, "ts": ts, "event_type": kind,
                "product_id": product, **more}  # fmt: skip

    return [
        ev("a", "u1", T0 - 2 * DAY, "view", "p1", session_id="s0"),
        ev("b", "u1", T0 - 2 * H, "purchase", "p1", session_id="s0b", price=20.0),
        ev("c", "u1", T0 - 30 * M, "cart", "p2", session_id="s1", category="toys", price=30.0),
        ev("x", "u1", T0, "view", "p1", session_id="s1"),
        ev("y", "u1", T0, "cart", "p1", session_id="s1"),
        ev("f", "u1", T0 + 10 * M, "purchase", "p1", session_id="s1", price=5000.0),
        ev("g", "u2", T0 - 8 * DAY, "view", "p1", session_id="s2"),
        ev("h", "u2", T0 - H, "view", "p1", session_id="s2"),
        ev("i", "u2", T0, "view", "p3", session_id="s2", category="electronics"),
        ev("l", "u3", T0 + 11 * H + 50 * M, "view", "p4", session_id="s3"),
        ev("m", "u3", T0 + 12 * H + 10 * M, "purchase", "p4", session_id="s3"),
    ]


def _by_id(frame: Any) -> dict[str, dict[str, Any]]:
    return {row["event_id"]: row.asDict() for row in frame.collect()}


@pytest.fixture(scope="module")
def events(spark: Any) -> Any:
    return spark.createDataFrame(make_events(_rows()))


def _conversion(purchases: float, views: float) -> float:
    return (purchases + CONVERSION_PRIOR_RATE * CONVERSION_PRIOR_WEIGHT) / (
        views + CONVERSION_PRIOR_WEIGHT
    )


def test_features_see_only_strictly_earlier_events_and_labels_look_ahead(events: Any) -> None:
    rows = _by_id(with_purchase_labels(point_in_time_features(events)))
    x = rows["x"]
    expected_x = {
        "user_events_1h": 1.0, "user_carts_1h": 1.0, "user_purchases_1h": 0.0, "user_spend_1h": 0.0,
        "user_events_24h": 2.0, "user_carts_24h": 1.0, "user_purchases_24h": 1.0,
        "user_spend_24h": 20.0,
        "user_events_7d": 3.0, "user_carts_7d": 1.0, "user_purchases_7d": 1.0,
        "user_spend_7d": 20.0,
        "user_recency_s": 1800.0,
        "user_category_share_7d": 2 / 3,
        "product_views_7d": 2.0, "product_purchases_7d": 1.0,
        "product_conversion_7d": _conversion(1.0, 2.0),
    }  # fmt: skip
    assert {name: x[name] for name in expected_x} == pytest.approx(expected_x, abs=1e-12)
    # the tie: y has the same timestamp as x, so neither sees the other
    assert {name: rows["y"][name] for name in ENTITY_FEATURE_COLUMNS} == {
        name: x[name] for name in ENTITY_FEATURE_COLUMNS
    }
    # the planted purchase sees x, y and c in its last hour; nobody before it sees it
    assert rows["f"]["user_events_1h"] == 3.0
    assert max(row["user_spend_7d"] for row in rows.values()) == 20.0
    # u2: g is 8 days old (outside), h exactly one hour before i (inside)
    i = rows["i"]
    assert (i["user_events_1h"], i["user_events_7d"], i["user_recency_s"]) == (1.0, 1.0, 3600.0)
    assert i["user_category_share_7d"] == 0.0
    assert rows["g"]["user_recency_s"] == RECENCY_CAP_S
    assert rows["g"]["product_conversion_7d"] == pytest.approx(_conversion(0.0, 0.0))
    # labels: a purchase later in the same session and on the same date
    labels = {event_id: row["label"] for event_id, row in rows.items()}
    assert labels == {
        "a": 0, "b": None, "c": 1, "x": 1, "y": 1, "f": None,
        "g": 0, "h": 0, "i": 0, "l": 0, "m": None,
    }  # fmt: skip


def test_a_planted_future_event_changes_no_earlier_row(events: Any) -> None:
    without_future = events.filter("event_id != 'f'")
    with_f = _by_id(point_in_time_features(events))
    without_f = _by_id(point_in_time_features(without_future))
    for event_id, row in without_f.items():
        if row["ts"] < with_f["f"]["ts"]:
            assert with_f[event_id] == row, event_id
    assert with_f["x"]["user_spend_24h"] == 20.0


def test_snapshot_holds_the_aggregates_at_the_run_date_end(
    spark: Any, events: Any, table_path: Any
) -> None:
    path = table_path("entity_features")
    totals = daily_category_totals(events)
    replace_partitions(
        entity_snapshot(events, D, totals), path, ENTITY_FEATURES, [D], {"test": True}
    )
    snapshot = load_snapshot(path)  # delta-rs, as the streaming worker reads it
    assert snapshot.snapshot_date == D
    assert snapshot.as_of == datetime(2024, 3, 5, tzinfo=UTC)
    u1 = dict(zip(("events_1h", "events_24h", "spend_24h", "events_7d", "purchases_7d"),
                  snapshot.user_values[snapshot.user_index["u1"]][[0, 4, 7, 8, 10]],
                  strict=True))  # fmt: skip
    assert u1 == {"events_1h": 0.0, "events_24h": 5.0, "spend_24h": 5020.0, "events_7d": 6.0,
                  "purchases_7d": 2.0}  # fmt: skip
    assert "u3" in snapshot.user_index  # 23:50 on D is before the end of D
    # prices of D and the 6 days before it (g is 8 days old): books 10,20,10,10,5000,10,10
    assert snapshot.category_mean_price["books"] == pytest.approx(5070 / 7)
    assert snapshot.category_mean_price["toys"] == 30.0

    # Online vs batch: a probe event exactly at the snapshot's as-of time gets from the
    # snapshot the same entity features the point-in-time windows give it.
    probes = [
        {"event_id": "probe1", "user_id": "u1", "ts": snapshot.as_of, "product_id": "p1"},
        {"event_id": "probe2", "user_id": "u2", "ts": snapshot.as_of, "product_id": "p3",
         "category": "toys"},
        {"event_id": "probe3", "user_id": "new", "ts": snapshot.as_of, "product_id": "new"},
    ]  # fmt: skip
    probe_table = make_events(probes)
    online = snapshot.entity_features(probe_table)
    batch = _by_id(point_in_time_features(events.unionByName(spark.createDataFrame(probe_table))))
    for position, probe in enumerate(probes):
        for name in ENTITY_FEATURE_COLUMNS:
            assert online[name][position] == pytest.approx(
                batch[probe["event_id"]][name], abs=1e-9
            ), (probe["event_id"], name)
