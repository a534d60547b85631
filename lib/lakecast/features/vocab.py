"""The fixed vocabularies of the clickstream: categories, devices, countries, event types.

Encodings are one-hot over a fixed, ordered vocabulary, so that a column means the same thing
in every batch and on every worker. Devices and countries that are not in the vocabulary fall
into an explicit ``unknown`` bucket; an unknown *category* is an error instead (the streaming
worker dead-letters the event), because the entity aggregates and the price reference are
keyed by category and a typo there would silently skew them.

The synthetic generator draws from these same tuples, so they are the one source of truth.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakecast.lake.events import EVENT_TYPES as EVENT_TYPES  # the event contract's

CATEGORIES: Final = (
    "electronics",
    "fashion",
    "home",
    "beauty",
    "sports",
    "books",
    "toys",
    "grocery",
)
KNOWN_CATEGORIES: Final = frozenset(CATEGORIES)

DEVICES: Final = ("desktop", "mobile", "tablet")
COUNTRIES: Final = ("US", "GB", "DE", "FR", "IN", "BR", "JP", "CA")
UNKNOWN: Final = "unknown"


def one_hot_columns(prefix: str, vocabulary: tuple[str, ...], *, unknown: bool) -> list[str]:
    """The column names of a one-hot encoding: ``prefix_<value>`` ... [``prefix_unknown``]."""
    names = [f"{prefix}_{value.lower()}" for value in vocabulary]
    return [*names, f"{prefix}_{UNKNOWN}"] if unknown else names


def vocabulary_index(values: pa.Array | pa.ChunkedArray, vocabulary: tuple[str, ...]) -> np.ndarray:
    """Each value's position in ``vocabulary``; ``len(vocabulary)`` for unknown or null values."""
    index = pc.index_in(values, value_set=pa.array(vocabulary, pa.string()))
    return np.asarray(pc.fill_null(index, len(vocabulary)).to_numpy(zero_copy_only=False), np.int64)


def one_hot(
    prefix: str, values: pa.Array | pa.ChunkedArray, vocabulary: tuple[str, ...], *, unknown: bool
) -> dict[str, np.ndarray]:
    """One float64 column per vocabulary entry (and the unknown bucket if asked for).

    Without the unknown bucket an unknown value is all zeros.
    """
    index = vocabulary_index(values, vocabulary)
    names = one_hot_columns(prefix, vocabulary, unknown=unknown)
    return {name: (index == position).astype(np.float64) for position, name in enumerate(names)}
