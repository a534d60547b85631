"""Feature data for tests: an ``entity_features`` snapshot and ``features`` rows, made fast.

Worker tests, the benchmarks and the demo fixtures need what would otherwise take a Spark
run: :func:`snapshot_rows` / :func:`write_snapshot` give a small snapshot (written with
delta-rs) that the events of :mod:`lakecast.testing.events` meet, and :func:`training_matrix`
the feature rows the worker computes for those events. :func:`synthetic_features` makes
``features`` rows with a planted signal in any number, for scoring tests and benchmarks,
without generating events and extracting features. All deterministic by seed.
"""

from __future__ import annotations

import datetime as dt
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from lakecast.features.spec import (
    FEATURE_COLUMNS,
    FEATURES_VERSION,
    PRODUCT_FEATURE_COLUMNS,
    USER_COUNT_COLUMNS,
)
from lakecast.features.vocab import CATEGORIES
from lakecast.testing.events import SNAPSHOT_DATE, event_value, make_events


def snapshot_rows(
    *, users: int = 500, products: int = 200, snapshot_date: date = SNAPSHOT_DATE, seed: int = 0
) -> pa.Table:
    """An ``entity_features`` snapshot with random but plausible aggregates.

    Users ``u-0 .. u-(users-1)`` and products ``p-0 ..`` exist; every category has a mean price.
    Half the users are left out so that the worker also meets unknown entities.
    """
    from lakecast.lake.tables import ENTITY_FEATURES

    rng = np.random.default_rng(seed)
    schema = ENTITY_FEATURES.arrow_schema()
    as_of = datetime.combine(snapshot_date + timedelta(days=1), time(0), tzinfo=UTC)
    rows: list[dict[str, Any]] = []
    for u in range(0, users, 2):
        row: dict[str, Any] = {"entity_type": "user", "entity_id": f"u-{u}"}
        counts = rng.integers(0, 20, len(USER_COUNT_COLUMNS)).astype(float)
        row.update(dict(zip(USER_COUNT_COLUMNS, counts, strict=True)))
        row["user_last_event_ts"] = as_of - timedelta(seconds=int(rng.integers(1, 500_000)))
        for category in CATEGORIES:
            row[f"user_count_7d_{category}"] = float(rng.integers(0, 5))
        rows.append(row)
    for p in range(products):
        views = float(rng.integers(0, 300))
        purchases = float(rng.integers(0, 10))
        rows.append(
            {
                "entity_type": "product",
                "entity_id": f"p-{p}",
                PRODUCT_FEATURE_COLUMNS[0]: views,
                PRODUCT_FEATURE_COLUMNS[1]: purchases,
                PRODUCT_FEATURE_COLUMNS[2]: (purchases + 1.0) / (views + 20.0),
            }
        )
    for index, category in enumerate(CATEGORIES):
        rows.append(
            {
                "entity_type": "category",
                "entity_id": category,
                "category_mean_price_7d": 50.0 + 25.0 * index,
            }
        )
    for row in rows:
        row["as_of"] = as_of
        row["features_version"] = FEATURES_VERSION
        row["snapshot_date"] = snapshot_date
    return pa.Table.from_pylist(rows, schema=schema)


def write_snapshot(path: str, rows: pa.Table | None = None) -> int:
    """Append snapshot rows to the Delta table at ``path`` with delta-rs; the new version."""
    from deltalake import DeltaTable, write_deltalake

    data = rows if rows is not None else snapshot_rows()
    write_deltalake(path, data, mode="append", partition_by=["snapshot_date"])
    return int(DeltaTable(path).version())


def training_matrix(rows: int = 600) -> np.ndarray:
    """Feature rows of synthetic events against :func:`snapshot_rows`, as the worker sees them."""
    from lakecast.features.online import online_feature_matrix
    from lakecast.features.snapshot import snapshot_from_arrow

    snapshot = snapshot_from_arrow(snapshot_rows())
    values = []
    for i in range(rows):
        value = event_value(i)
        value["ts"] = datetime.fromisoformat(value["ts"])
        values.append(value)
    return online_feature_matrix(make_events(values), snapshot)


# ---- features rows with a planted signal, for scoring ----------------------------------------

DEFAULT_START = dt.date(2026, 1, 1)


def synthetic_feature_matrix(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An (rows, len(FEATURE_COLUMNS)) float64 matrix and 0/1 labels with a planted signal."""
    rng = np.random.default_rng(seed)
    width = len(FEATURE_COLUMNS)
    matrix = rng.standard_normal((rows, width))
    weights = np.zeros(width)
    weights[: min(6, width)] = [1.2, -0.8, 0.6, 0.5, -0.4, 0.3][: min(6, width)]
    logits = matrix @ weights - 1.5
    labels = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logits))).astype(np.int32)
    return matrix, labels


def synthetic_features(
    rows: int,
    *,
    seed: int = 0,
    days: int = 3,
    start_date: dt.date = DEFAULT_START,
    first_id: int = 0,
) -> pa.Table:
    """``rows`` rows with the ``features`` table's schema, spread evenly over ``days`` dates."""
    from lakecast.lake.tables import FEATURES

    matrix, labels = synthetic_feature_matrix(rows, seed)
    ids = np.arange(first_id, first_id + rows)
    day_of = (np.arange(rows) * days) // max(rows, 1)
    start = np.datetime64(start_date, "D")
    dates = start + day_of.astype("timedelta64[D]")
    ts = dates.astype("datetime64[us]") + (ids % 86_400).astype("timedelta64[s]")
    text = np.char.mod
    columns: dict[str, pa.Array] = {
        "event_id": pa.array(text("e%09d", ids)),
        "user_id": pa.array(text("u%06d", ids % 997)),
        "session_id": pa.array(text("s%08d", ids // 4)),
        "product_id": pa.array(text("p%05d", ids % 211)),
        "category": pa.array(np.full(rows, "books")),
        "event_type": pa.array(np.full(rows, "view")),
        "ts": pa.array(ts, type=pa.timestamp("us", tz="UTC")),
        "label": pa.array(labels, type=pa.int32()),
        "features_version": pa.array(np.full(rows, FEATURES_VERSION)),
        "date": pa.array(dates, type=pa.date32()),
    }
    for index, name in enumerate(FEATURE_COLUMNS):
        columns[name] = pa.array(matrix[:, index], type=pa.float64())
    schema = FEATURES.arrow_schema()
    for field in schema:  # descriptive columns no scorer reads: a constant of the right type
        if field.name not in columns:
            columns[field.name] = pa.array(
                np.full(rows, 10.0 if pa.types.is_floating(field.type) else "x"), field.type
            )
    return pa.Table.from_arrays([columns[name] for name in schema.names], schema=schema)
