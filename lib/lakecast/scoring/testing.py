"""Test doubles for scoring: synthetic ``features`` rows with a planted signal, made directly.

Scoring tests and the benchmark need feature rows fast and in any number, without generating
events and extracting features. These rows have the ``features`` table's schema; the label is
drawn from a logistic model of a few feature columns, so a trained model scores above chance.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from lakecast.features.spec import FEATURE_COLUMNS, FEATURES_VERSION

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
