"""The online path's view of the entity aggregates: the latest ``entity_features`` snapshot.

Read with delta-rs (no JVM in a streaming worker) into numpy arrays keyed by user, product and
category, so that a micro-batch's entity features are a few array gathers. The snapshot holds
the aggregates as of its date's end; an event after that is given them as they stood then, and
its recency is counted from the user's last event in the snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakecast.errors import SchemaError
from lakecast.features.spec import (
    CONVERSION_PRIOR_RATE,
    ENTITY_FEATURE_COLUMNS,
    PRODUCT_FEATURE_COLUMNS,
    RECENCY_CAP_S,
    USER_COUNT_COLUMNS,
)
from lakecast.features.transforms import Batch, FeatureLookups, column_of, event_micros
from lakecast.features.vocab import CATEGORIES, vocabulary_index

if TYPE_CHECKING:
    from deltalake import DeltaTable

CATEGORY_COUNT_COLUMNS = tuple(f"user_count_7d_{category}" for category in CATEGORIES)
_NO_EVENT = np.iinfo(np.int64).min


def _keyed(
    rows: pa.Table, columns: tuple[str, ...], default: list[float]
) -> tuple[dict[str, int], np.ndarray]:
    """Row index per entity id, and the values with one extra default row at the end."""
    ids = rows.column("entity_id").to_pylist()
    values = np.empty((len(ids) + 1, len(columns)), np.float64)
    for position, name in enumerate(columns):
        column = pc.fill_null(pc.cast(rows.column(name), pa.float64()), 0.0)
        values[:-1, position] = column.to_numpy()
    values[-1] = default
    return {entity: index for index, entity in enumerate(ids)}, values


@dataclass(frozen=True)
class EntitySnapshot:
    """One snapshot of the entity aggregates, ready for vectorised lookups."""

    table_version: int | None = None
    snapshot_date: date | None = None
    as_of: datetime | None = None
    features_version: str | None = None
    user_index: Mapping[str, int] = field(default_factory=dict)
    user_values: np.ndarray = field(default_factory=lambda: np.zeros((1, len(USER_COUNT_COLUMNS))))
    user_last_us: np.ndarray = field(default_factory=lambda: np.array([_NO_EVENT], np.int64))
    user_categories: np.ndarray = field(default_factory=lambda: np.zeros((1, len(CATEGORIES))))
    product_index: Mapping[str, int] = field(default_factory=dict)
    product_values: np.ndarray = field(
        default_factory=lambda: np.array([[0.0, 0.0, CONVERSION_PRIOR_RATE]])
    )
    category_mean_price: Mapping[str, float] = field(default_factory=dict)

    @property
    def lookups(self) -> FeatureLookups:
        """The per-event transforms' reference values from this snapshot."""
        return FeatureLookups(category_mean_price=dict(self.category_mean_price))

    def entity_features(self, batch: Batch) -> dict[str, np.ndarray]:
        """``ENTITY_FEATURE_COLUMNS`` for the events of ``batch`` (unknown entities: defaults)."""
        users = column_of(batch, "user_id").to_pylist()
        products = column_of(batch, "product_id").to_pylist()
        missing_user = len(self.user_index)
        missing_product = len(self.product_index)
        u = np.fromiter((self.user_index.get(x, missing_user) for x in users), np.int64, len(users))
        p = np.fromiter(
            (self.product_index.get(x, missing_product) for x in products), np.int64, len(products)
        )
        counts = self.user_values[u]
        columns = {name: counts[:, i] for i, name in enumerate(USER_COUNT_COLUMNS)}

        ts_us, ts_ok = event_micros(batch)
        last = self.user_last_us[u]
        known = ts_ok & (last != _NO_EVENT)
        elapsed = np.where(known, (ts_us - np.where(known, last, 0)) / 1e6, RECENCY_CAP_S)
        columns["user_recency_s"] = np.clip(elapsed, 0.0, RECENCY_CAP_S)

        category = vocabulary_index(column_of(batch, "category"), CATEGORIES)
        padded = np.pad(self.user_categories, ((0, 0), (0, 1)))  # unknown category: count 0
        same_category = padded[u, category]
        events_7d = columns["user_events_7d"]
        columns["user_category_share_7d"] = np.divide(
            same_category, events_7d, out=np.zeros_like(events_7d), where=events_7d > 0
        )
        product = self.product_values[p]
        for i, name in enumerate(PRODUCT_FEATURE_COLUMNS):
            columns[name] = product[:, i]
        return {
            name: np.ascontiguousarray(columns[name], np.float64) for name in ENTITY_FEATURE_COLUMNS
        }


def latest_snapshot_date(table: DeltaTable) -> date | None:
    """The newest ``snapshot_date`` partition of the table, None if it has none."""
    values = [part["snapshot_date"] for part in table.partitions() if part.get("snapshot_date")]
    return max(date.fromisoformat(value) for value in values) if values else None


def snapshot_from_arrow(
    rows: pa.Table, *, table_version: int | None = None, snapshot_date: date | None = None
) -> EntitySnapshot:
    """Index the rows of one ``entity_features`` snapshot (as read by delta-rs or Spark)."""
    needed = {"entity_type", "entity_id", *USER_COUNT_COLUMNS, *PRODUCT_FEATURE_COLUMNS}
    missing = sorted(needed - set(rows.schema.names))
    if missing:
        msg = f"entity snapshot: rows lack columns {missing}"
        raise SchemaError(msg)
    kinds = rows.column("entity_type")
    users = rows.filter(pc.equal(kinds, "user"))
    products = rows.filter(pc.equal(kinds, "product"))
    categories = rows.filter(pc.equal(kinds, "category"))

    user_index, user_values = _keyed(users, USER_COUNT_COLUMNS, [0.0] * len(USER_COUNT_COLUMNS))
    _, user_categories = _keyed(users, CATEGORY_COUNT_COLUMNS, [0.0] * len(CATEGORIES))
    last = pc.cast(
        pc.cast(users.column("user_last_event_ts"), pa.timestamp("us", "UTC")), pa.int64()
    )
    user_last_us = np.append(pc.fill_null(last, _NO_EVENT).to_numpy(), _NO_EVENT).astype(np.int64)
    product_index, product_values = _keyed(
        products, PRODUCT_FEATURE_COLUMNS, [0.0, 0.0, CONVERSION_PRIOR_RATE]
    )
    means = dict(
        zip(
            categories.column("entity_id").to_pylist(),
            categories.column("category_mean_price_7d").to_pylist(),
            strict=True,
        )
    )
    as_of = pc.min(rows.column("as_of")).as_py() if rows.num_rows else None
    if snapshot_date is None and "snapshot_date" in rows.schema.names and rows.num_rows:
        snapshot_date = pc.max(rows.column("snapshot_date")).as_py()
    versions = pc.unique(rows.column("features_version")).to_pylist() if rows.num_rows else []
    return EntitySnapshot(
        table_version=table_version,
        snapshot_date=snapshot_date,
        as_of=as_of,
        features_version=versions[0] if len(versions) == 1 else None,
        user_index=user_index,
        user_values=user_values,
        user_last_us=user_last_us,
        user_categories=user_categories,
        product_index=product_index,
        product_values=product_values,
        category_mean_price={k: float(v) for k, v in means.items() if v is not None},
    )


def load_snapshot(
    path: str,
    snapshot_date: date | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> EntitySnapshot:
    """Read the latest (or the given) snapshot of the ``entity_features`` table with delta-rs.

    Raises:
        SchemaError: there is no Delta table at ``path``, or it has no snapshot yet.
    """
    from deltalake import DeltaTable

    options = dict(storage_options or {})
    if not DeltaTable.is_deltatable(path, storage_options=options):
        msg = f"entity snapshot: no Delta table at {path!r}"
        raise SchemaError(msg)
    table = DeltaTable(path, storage_options=options)
    day = snapshot_date or latest_snapshot_date(table)
    if day is None:
        msg = f"entity snapshot: table {path!r} (version {table.version()}) has no snapshot yet"
        raise SchemaError(msg)
    rows = table.to_pyarrow_table(filters=[("snapshot_date", "=", day)])
    return snapshot_from_arrow(rows, table_version=table.version(), snapshot_date=day)
