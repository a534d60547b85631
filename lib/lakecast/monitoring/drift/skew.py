"""Training/serving skew: the features a worker served against the batch job's for the same event.

The parity tests prove the two code paths agree on the same inputs; this compares what
production actually computed: the sampled online vector (the worker's transforms plus the
entity snapshot it had) against the ``features`` table row of the same event (the extract
job's transforms plus point-in-time aggregates). Any feature further apart than the tolerance
is reported by name; a sampled event the batch job has not computed yet is counted unmatched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakecast.errors import SchemaError
from lakecast.features.spec import FEATURE_COLUMNS

BATCH_SUFFIX = "__batch"
SKEW_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("feature", pa.string(), nullable=False),
        pa.field("online", pa.float64()),
        pa.field("batch", pa.float64()),
        pa.field("difference", pa.float64()),
    ]
)


@dataclass(frozen=True)
class SkewReport:
    """What the comparison found: every difference beyond the tolerance, by event and feature."""

    compared: int  # sampled events that the batch job also computed
    unmatched: int  # sampled events with no batch row (yet)
    tolerance: float
    differences: pa.Table  # SKEW_SCHEMA
    by_feature: dict[str, int] = field(default_factory=dict)

    def summary(self, examples: int = 20) -> dict[str, object]:
        """JSON-ready: the counts, per feature, and the first differences."""
        return {
            "compared": self.compared,
            "unmatched": self.unmatched,
            "tolerance": self.tolerance,
            "differences": self.differences.num_rows,
            "by_feature": self.by_feature,
            "examples": self.differences.slice(0, examples).to_pylist(),
        }


def _first_per_event(table: pa.Table) -> pa.Table:
    # A sample sent twice (a resend after a broker error) is one event.
    ids = table.column("event_id").to_pylist()
    seen: dict[str, int] = {}
    for row, event_id in enumerate(ids):
        seen.setdefault(event_id, row)
    return table.take(pa.array(sorted(seen.values()), pa.int64()))


def feature_skew(
    served: pa.Table,
    batch: pa.Table,
    *,
    tolerance: float,
    columns: Sequence[str] = FEATURE_COLUMNS,
) -> SkewReport:
    """Compare ``served`` (event_id + feature columns, the online values) with ``batch`` (the
    same columns from the ``features`` table).

    Raises:
        SchemaError: a side lacks ``event_id`` or a feature column.
    """
    for side, table in (("served features", served), ("batch features", batch)):
        missing = [c for c in ("event_id", *columns) if c not in table.column_names]
        if missing:
            msg = f"skew: the {side} lack columns {missing}"
            raise SchemaError(msg)
    served = _first_per_event(served.select(["event_id", *columns]))
    batch = _first_per_event(batch.select(["event_id", *columns]))
    renamed = batch.rename_columns(["event_id", *(f"{c}{BATCH_SUFFIX}" for c in columns)])
    joined = served.join(renamed, keys="event_id", join_type="inner")
    unmatched = served.num_rows - joined.num_rows
    event_ids = np.asarray(joined.column("event_id").to_pylist(), dtype=object)
    parts: list[pa.Table] = []
    by_feature: dict[str, int] = {}
    for name in columns:
        online = _floats(joined.column(name))
        offline = _floats(joined.column(f"{name}{BATCH_SUFFIX}"))
        both_nan = np.isnan(online) & np.isnan(offline)
        with np.errstate(invalid="ignore"):
            difference = np.abs(online - offline)
        apart = ~both_nan & ~(difference <= tolerance)  # one NaN side counts as apart
        if not apart.any():
            continue
        rows = np.flatnonzero(apart)
        by_feature[name] = int(rows.size)
        parts.append(
            pa.table(
                {
                    "event_id": pa.array(event_ids[rows].tolist(), pa.string()),
                    "feature": pa.array([name] * rows.size, pa.string()),
                    "online": pa.array(online[rows]),
                    "batch": pa.array(offline[rows]),
                    "difference": pa.array(online[rows] - offline[rows]),
                },
                schema=SKEW_SCHEMA,
            )
        )
    differences = pa.concat_tables(parts) if parts else SKEW_SCHEMA.empty_table()
    return SkewReport(joined.num_rows, unmatched, tolerance, differences, by_feature)


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    values = pc.fill_null(pc.cast(column, pa.float64()), np.nan)
    return np.asarray(values.to_numpy(zero_copy_only=False), np.float64)
