"""The ordered list of model features and the version string that names it.

A model is trained on ``FEATURE_COLUMNS`` in this order, and every scorer (the Spark batch job,
the streaming worker) builds its input matrix in the same order. ``FEATURES_VERSION`` changes
whenever the columns, the vocabularies or the window lengths change, because it is derived from
them: a model card records it and a scorer refuses a model built on another version.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class AllowedRange:
    """A feature's declared closed range; ``None`` leaves that side open. NaN is never allowed."""

    low: float | None = None
    high: float | None = None

    def describe(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"in [{low}, {high}]"


@dataclass(frozen=True)
class AllowedValues:
    """A feature's declared categories (for a one-hot or flag column: 0 and 1)."""

    values: tuple[float, ...]

    def describe(self) -> str:
        return "one of {" + ", ".join(f"{v:g}" for v in self.values) + "}"


Invariant = AllowedRange | AllowedValues

_FLAG = AllowedValues((0.0, 1.0))
_COUNT = AllowedRange(0.0, None)
_UNIT = AllowedRange(-1.0, 1.0)
_SHARE = AllowedRange(0.0, 1.0)


def _declared_invariants() -> dict[str, Invariant]:
    declared: dict[str, Invariant] = {
        # A price above ten million is a unit or parsing error upstream.
        "log_price": AllowedRange(0.0, math.log1p(1e7)),
        "price_missing": _FLAG,
        "price_to_category_mean": _COUNT,
        "hour_sin": _UNIT,
        "hour_cos": _UNIT,
        "weekday_sin": _UNIT,
        "weekday_cos": _UNIT,
        "is_weekend": _FLAG,
        **{name: _COUNT for name in USER_COUNT_COLUMNS},
        "user_recency_s": AllowedRange(0.0, RECENCY_CAP_S),
        "user_category_share_7d": _SHARE,
        "product_views_7d": _COUNT,
        "product_purchases_7d": _COUNT,
        "product_conversion_7d": _SHARE,
    }
    for name in EVENT_FEATURE_COLUMNS:
        if name not in declared:  # the one-hot columns
            declared[name] = _FLAG
    return {name: declared[name] for name in FEATURE_COLUMNS}


FEATURE_INVARIANTS: Final[Mapping[str, Invariant]] = _declared_invariants()
"""Each model input's allowed range or values, checked on training sets (``jobs/train.py``) and
on the worker's served batches alike (:mod:`lakecast.features.invariants`). Not part of
``FEATURES_VERSION``: they constrain the values, they do not define them."""


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
