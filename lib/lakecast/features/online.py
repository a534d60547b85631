"""The full model input of a micro-batch on the streaming path.

Per-event transforms (the same code as the batch job) plus the entity aggregates from the
latest snapshot, stacked in ``FEATURE_COLUMNS`` order.
"""

from __future__ import annotations

import numpy as np

from lakecast.features.snapshot import EntitySnapshot
from lakecast.features.spec import FEATURE_COLUMNS
from lakecast.features.transforms import Batch, event_features


def online_features(batch: Batch, snapshot: EntitySnapshot) -> dict[str, np.ndarray]:
    """Every feature column of ``batch``'s events, float64, in ``FEATURE_COLUMNS`` order."""
    columns = {**event_features(batch, snapshot.lookups), **snapshot.entity_features(batch)}
    return {name: columns[name] for name in FEATURE_COLUMNS}


def online_feature_matrix(batch: Batch, snapshot: EntitySnapshot) -> np.ndarray:
    """The (n, len(FEATURE_COLUMNS)) float64 model input of ``batch``."""
    columns = online_features(batch, snapshot)
    return np.column_stack(list(columns.values())).reshape(batch.num_rows, len(FEATURE_COLUMNS))
