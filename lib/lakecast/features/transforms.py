"""Per-event feature transforms: one vectorised definition for batch and online.

:func:`event_features` takes an Arrow batch of events and returns numpy float64 columns. The
Spark extract job calls it inside ``mapInArrow`` and the streaming worker calls it on its
micro-batch: the same code, so the same values. It never raises on bad values (NaN price,
unknown device) and never returns NaN; :func:`validate_event_batch` is the separate gate that
says, per row, why an event must be dead-lettered instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakecast.errors import SchemaError
from lakecast.features.spec import EVENT_FEATURE_COLUMNS
from lakecast.features.vocab import (
    CATEGORIES,
    COUNTRIES,
    DEVICES,
    EVENT_TYPES,
    KNOWN_CATEGORIES,
    one_hot,
    vocabulary_index,
)

TRANSFORM_INPUTS = ("price", "ts", "device", "country", "category", "event_type")
"""The event columns that :func:`event_features` reads."""

_US_PER_DAY = 86_400_000_000
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday; Monday is 0


@dataclass(frozen=True)
class FeatureLookups:
    """Reference values that per-event transforms need from the aggregates.

    ``category_mean_price`` is the mean purchase-or-view price of each category over the
    lookback before the events (the batch job computes it per run date, the worker takes it
    from the entity-feature snapshot). A category without a reference gets a ratio of 1.
    """

    category_mean_price: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EventProblem:
    """Why one event cannot be scored: ``kind`` is machine-readable, ``message`` names it."""

    kind: str
    message: str


Batch: TypeAlias = "pa.RecordBatch | pa.Table"


def column_of(batch: Batch, name: str) -> pa.Array | pa.ChunkedArray:
    index = batch.schema.get_field_index(name)
    if index < 0:
        msg = f"event features: input batch has no column {name!r} (columns: {batch.schema.names})"
        raise SchemaError(msg)
    return batch.column(index)


def _float_column(batch: Batch, name: str) -> np.ndarray:
    values = pc.cast(column_of(batch, name), pa.float64())
    return np.asarray(pc.fill_null(values, np.nan).to_numpy(zero_copy_only=False), np.float64)


def event_micros(batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    """Event times as int64 microseconds since the epoch (UTC) and a mask of valid ones."""
    ts = column_of(batch, "ts")
    if not pa.types.is_timestamp(ts.type):
        msg = f"event features: column 'ts' must be a timestamp, found {ts.type}"
        raise SchemaError(msg)
    micros = pc.cast(pc.cast(ts, pa.timestamp("us", tz=ts.type.tz)), pa.int64())
    valid = np.asarray(pc.is_valid(micros).to_numpy(zero_copy_only=False), bool)
    values = np.asarray(pc.fill_null(micros, 0).to_numpy(zero_copy_only=False), np.int64)
    return values, valid


def _cyclical(position: np.ndarray, period: float, valid: np.ndarray) -> tuple[np.ndarray, ...]:
    angle = 2.0 * np.pi * position / period
    # An event without a time gets (0, 0): off the unit circle, so a model can tell.
    return np.where(valid, np.sin(angle), 0.0), np.where(valid, np.cos(angle), 0.0)


def event_features(batch: Batch, lookups: FeatureLookups | None = None) -> dict[str, np.ndarray]:
    """The per-event feature columns of ``batch``, float64, in ``EVENT_FEATURE_COLUMNS`` order.

    Args:
        batch: events with at least ``TRANSFORM_INPUTS`` (extra columns are ignored).
        lookups: the category price reference; none means every ratio is 1.

    Raises:
        SchemaError: a needed column is missing or ``ts`` is not a timestamp.
    """
    lookups = lookups or FeatureLookups()
    price = _float_column(batch, "price")
    price_ok = np.isfinite(price) & (price >= 0.0)
    safe_price = np.where(price_ok, price, 0.0)

    category = column_of(batch, "category")
    known_means = [lookups.category_mean_price.get(c, np.nan) for c in CATEGORIES]
    # Unknown categories index one past the end: the NaN appended there means "no reference".
    reference = np.array([*known_means, np.nan], np.float64)[vocabulary_index(category, CATEGORIES)]
    ratio_ok = price_ok & np.isfinite(reference) & (reference > 0.0)
    ratio = np.divide(safe_price, reference, out=np.ones_like(safe_price), where=ratio_ok)

    micros, ts_ok = event_micros(batch)
    second_of_day = (micros % _US_PER_DAY) / 1e6
    weekday = (micros // _US_PER_DAY + _EPOCH_WEEKDAY) % 7
    hour_sin, hour_cos = _cyclical(second_of_day, 86_400.0, ts_ok)
    weekday_sin, weekday_cos = _cyclical(weekday.astype(np.float64), 7.0, ts_ok)

    columns: dict[str, np.ndarray] = {
        "log_price": np.log1p(safe_price),
        "price_missing": (~price_ok).astype(np.float64),
        "price_to_category_mean": ratio,
        "hour_sin": hour_sin,
        "hour_cos": hour_cos,
        "weekday_sin": weekday_sin,
        "weekday_cos": weekday_cos,
        "is_weekend": (ts_ok & (weekday >= 5)).astype(np.float64),
        **one_hot("event", column_of(batch, "event_type"), EVENT_TYPES, unknown=False),
        **one_hot("device", column_of(batch, "device"), DEVICES, unknown=True),
        **one_hot("country", column_of(batch, "country"), COUNTRIES, unknown=True),
        **one_hot("category", category, CATEGORIES, unknown=False),
    }
    return {name: columns[name] for name in EVENT_FEATURE_COLUMNS}


def with_event_features(batch: Batch, lookups: FeatureLookups | None = None) -> pa.RecordBatch:
    """``batch`` (as one record batch) with the per-event feature columns appended."""
    record = batch if isinstance(batch, pa.RecordBatch) else _as_record_batch(batch)
    features = event_features(record, lookups)
    arrays = [*record.columns, *(pa.array(values, pa.float64()) for values in features.values())]
    names = [*record.schema.names, *features]
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _as_record_batch(table: pa.Table) -> pa.RecordBatch:
    combined = table.combine_chunks()
    batches = combined.to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)


REQUIRED_IDS = ("event_id", "user_id", "session_id", "product_id")


def validate_event_batch(batch: Batch) -> list[EventProblem | None]:
    """Per row, the reason the event must be dead-lettered, or None when it is fine.

    Checks: ids present and non-empty, category in ``KNOWN_CATEGORIES``, event type in
    ``EVENT_TYPES``, a finite non-negative price, a timestamp. Unknown devices and countries
    are not errors (they have an ``unknown`` bucket).

    Raises:
        SchemaError: a column is missing altogether (the whole batch is malformed).
    """
    n = batch.num_rows
    problems: list[EventProblem | None] = [None] * n
    event_ids = column_of(batch, "event_id").to_pylist()

    def flag(mask: np.ndarray, kind: str, describe: str, values: list[object]) -> None:
        for row in np.flatnonzero(mask):
            if problems[row] is None:
                message = f"event {event_ids[row]!r}: {describe} {values[row]!r}"
                problems[row] = EventProblem(kind, message)

    for name in REQUIRED_IDS:
        values = column_of(batch, name).to_pylist()
        missing = np.array([v is None or v == "" for v in values], dtype=bool)
        flag(missing, f"missing_{name}", f"{name} is missing or empty, found", values)

    categories = column_of(batch, "category").to_pylist()
    unknown = np.array([c not in KNOWN_CATEGORIES for c in categories], dtype=bool)
    flag(
        unknown,
        "unknown_category",
        f"category is not one of {sorted(KNOWN_CATEGORIES)}, found",
        categories,
    )

    types = column_of(batch, "event_type").to_pylist()
    bad_type = np.array([t not in EVENT_TYPES for t in types], dtype=bool)
    flag(
        bad_type,
        "unknown_event_type",
        f"event_type is not one of {list(EVENT_TYPES)}, found",
        types,
    )

    price = _float_column(batch, "price")
    bad_price = ~(np.isfinite(price) & (price >= 0.0))
    flag(bad_price, "invalid_price", "price must be a finite number >= 0, found", price.tolist())

    _, ts_ok = event_micros(batch)
    flag(~ts_ok, "missing_ts", "ts is missing, found", [None] * n)
    return problems
