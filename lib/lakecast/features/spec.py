"""The ordered list of model features and the version string that names it.

A model is trained on ``FEATURE_COLUMNS`` in this order, and every scorer (the Spark batch job,
the streaming worker) builds its input matrix in the same order. ``FEATURES_VERSION`` changes
whenever the columns, the vocabularies or the window lengths change, because it is derived from
them: a model card records it and a scorer refuses a model built on another version.
"""

from __future__ import annotations

import hashlib
import json
from typing import Final

from lakecast.features.vocab import (
    CATEGORIES,
    COUNTRIES,
    DEVICES,
    EVENT_TYPES,
    one_hot_columns,
)

# Bump by hand when a definition changes without changing any name below (a formula fix).
SPEC_REVISION: Final = 1

WINDOWS: Final = (("1h", 3_600), ("24h", 86_400), ("7d", 604_800))
"""The user aggregate windows: (suffix, length in seconds)."""

LOOKBACK_DAYS: Final = 7
"""How many days before a run date the features of that date read (the longest window)."""

RECENCY_CAP_S: Final = 604_800.0
"""Seconds since the user's previous event, capped at the longest window; also the value for a
user with no event in that window (so a run over one day and a run over all days agree)."""

CONVERSION_PRIOR_RATE: Final = 0.05
CONVERSION_PRIOR_WEIGHT: Final = 20.0
"""Product conversion is smoothed towards a prior:
``(purchases + rate * weight) / (views + weight)``."""

EVENT_FEATURE_COLUMNS: Final = (
    "log_price",
    "price_missing",
    "price_to_category_mean",
    "hour_sin",
    "hour_cos",
    "weekday_sin",
    "weekday_cos",
    "is_weekend",
    *one_hot_columns("event", EVENT_TYPES, unknown=False),
    *one_hot_columns("device", DEVICES, unknown=True),
    *one_hot_columns("country", COUNTRIES, unknown=True),
    *one_hot_columns("category", CATEGORIES, unknown=False),
)
"""Per-event features: computed from the event alone (plus the category price reference)."""

USER_COUNT_COLUMNS: Final = tuple(
    f"user_{measure}_{suffix}"
    for suffix, _ in WINDOWS
    for measure in ("events", "carts", "purchases", "spend")
)
"""Per-user windowed aggregates over the user's earlier events."""

USER_FEATURE_COLUMNS: Final = (
    *USER_COUNT_COLUMNS,
    "user_recency_s",
    "user_category_share_7d",
)
PRODUCT_FEATURE_COLUMNS: Final = (
    "product_views_7d",
    "product_purchases_7d",
    "product_conversion_7d",
)
ENTITY_FEATURE_COLUMNS: Final = (*USER_FEATURE_COLUMNS, *PRODUCT_FEATURE_COLUMNS)

FEATURE_COLUMNS: Final = (*EVENT_FEATURE_COLUMNS, *ENTITY_FEATURE_COLUMNS)
"""Every model input column, in order, all float64."""

LABEL_COLUMN: Final = "label"
"""1 if the user purchased later in the same session on the same UTC date, else 0; null for
purchase events themselves (nothing to predict)."""


def _fingerprint() -> str:
    definition = {
        "columns": FEATURE_COLUMNS,
        "windows": WINDOWS,
        "lookback_days": LOOKBACK_DAYS,
        "recency_cap_s": RECENCY_CAP_S,
        "conversion_prior": (CONVERSION_PRIOR_RATE, CONVERSION_PRIOR_WEIGHT),
        "vocabularies": (CATEGORIES, DEVICES, COUNTRIES, EVENT_TYPES),
    }
    digest = hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()
    return digest[:8]


FEATURES_VERSION: Final = f"{SPEC_REVISION}.{_fingerprint()}"
"""``<revision>.<sha256 prefix of the definition>``, e.g. ``1.3f2a9c1d``."""
