"""Specs of the Delta tables that lakecast owns: columns, types, partitioning.

One spec serves both worlds: ``spark_schema()`` for jobs, ``arrow_schema()`` for the
JVM-less readers (delta-rs) and the streaming path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from lakecast.errors import SchemaError
from lakecast.features.spec import (
    FEATURE_COLUMNS,
    LABEL_COLUMN,
    PRODUCT_FEATURE_COLUMNS,
    USER_COUNT_COLUMNS,
)
from lakecast.features.vocab import CATEGORIES
from lakecast.lake.events import EVENT_FIELDS

if TYPE_CHECKING:
    from pyspark.sql.types import StructType


@dataclass(frozen=True)
class TableSpec:
    """A Delta table's name (its folder under the lake root), schema and partition columns."""

    name: str
    schema: pa.Schema
    partition_by: tuple[str, ...] = ()

    def arrow_schema(self) -> pa.Schema:
        return self.schema

    def spark_schema(self) -> StructType:
        from pyspark.sql.pandas.types import from_arrow_schema

        return from_arrow_schema(self.schema)

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    def check(self, found: pa.Schema, where: str) -> None:
        """Raise a SchemaError naming every missing or mistyped column of ``found``."""
        problems = []
        for field in self.schema:
            index = found.get_field_index(field.name)
            if index < 0:
                problems.append(f"missing column {field.name!r}")
            elif not found.field(index).type.equals(field.type):
                problems.append(
                    f"column {field.name!r} is {found.field(index).type}, expected {field.type}"
                )
        if problems:
            msg = f"{where}: table {self.name!r} " + "; ".join(problems)
            raise SchemaError(msg)


EVENTS = TableSpec(
    name="events",
    schema=pa.schema(
        [
            *EVENT_FIELDS,
            pa.field("date", pa.date32(), nullable=False),
        ]
    ),
    partition_by=("date",),
)


def _feature_tables() -> tuple[TableSpec, TableSpec]:
    # The feature spec names the columns: it stays the one source.
    features = TableSpec(
        name="features",
        schema=pa.schema(
            [
                *EVENT_FIELDS,
                *(pa.field(name, pa.float64(), nullable=False) for name in FEATURE_COLUMNS),
                pa.field(LABEL_COLUMN, pa.int32(), nullable=True),
                pa.field("features_version", pa.string(), nullable=False),
                pa.field("date", pa.date32(), nullable=False),
            ]
        ),
        partition_by=("date",),
    )
    entity_features = TableSpec(
        name="entity_features",
        schema=pa.schema(
            [
                pa.field("entity_type", pa.string(), nullable=False),
                pa.field("entity_id", pa.string(), nullable=False),
                pa.field("as_of", pa.timestamp("us", tz="UTC"), nullable=False),
                *(pa.field(name, pa.float64()) for name in USER_COUNT_COLUMNS),
                pa.field("user_last_event_ts", pa.timestamp("us", tz="UTC")),
                *(pa.field(f"user_count_7d_{category}", pa.float64()) for category in CATEGORIES),
                *(pa.field(name, pa.float64()) for name in PRODUCT_FEATURE_COLUMNS),
                pa.field("category_mean_price_7d", pa.float64()),
                pa.field("features_version", pa.string(), nullable=False),
                pa.field("snapshot_date", pa.date32(), nullable=False),
            ]
        ),
        partition_by=("snapshot_date",),
    )
    return features, entity_features


FEATURES, ENTITY_FEATURES = _feature_tables()
"""``features``: one row per event, the ordered model inputs (float64) and the label where known.
``entity_features``: per ``snapshot_date``, the user, product and category aggregates as of that
date's end (``entity_type`` says which columns a row fills), read online with delta-rs."""

SERVED_FEATURES_ARCHIVE = "archive/served_features"
"""The archive of the ``served_features`` topic: the sampled model-input vectors of the workers,
beside ``archive/predictions`` and ``archive/metrics``."""
FEATURE_DRIFT = "monitoring/feature_drift"
"""Per drift run, model version and feature: PSI and KS against the training set, the verdict."""
FEATURE_SKEW = "monitoring/feature_skew"
"""Per sampled event and feature whose online value differs from the batch job's by more than
``drift.skew_tolerance``: both values."""
MODEL_QUALITY = "monitoring/model_quality"
"""Per model version, variant and day whose outcomes are known: AUC, log loss, Brier, ECE with
the reliability bins, base rate and count (``jobs/evaluate_quality.py``)."""
