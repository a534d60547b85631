"""The fixed world the clickstream generator draws from, and the planted purchase signal.

Vocabularies come from :mod:`lakecast.features.vocab` (the one source of truth); this module adds
how often each value occurs, what things cost and how strongly each factor moves a purchase.
Everything here is plain Python so that it can be read, documented and unit-tested without Spark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from lakecast.features.vocab import CATEGORIES, COUNTRIES, DEVICES


@dataclass(frozen=True)
class Category:
    """A product category: its share of sessions and its log-normal price (median, sigma)."""

    name: str
    weight: float
    median_price: float
    price_sigma: float

    @property
    def mean_price(self) -> float:
        """The log-normal mean, ``median * exp(sigma**2 / 2)``."""
        return self.median_price * math.exp(self.price_sigma**2 / 2)


_CATEGORY_TERMS: Final = {
    # name: (session share, median price, sigma of log price)
    "electronics": (0.16, 180.0, 0.80),
    "fashion": (0.22, 45.0, 0.60),
    "home": (0.14, 60.0, 0.70),
    "beauty": (0.10, 22.0, 0.50),
    "sports": (0.09, 55.0, 0.70),
    "books": (0.12, 15.0, 0.40),
    "toys": (0.07, 28.0, 0.60),
    "grocery": (0.10, 9.0, 0.50),
}
CATEGORY_TABLE: Final = tuple(Category(name, *_CATEGORY_TERMS[name]) for name in CATEGORIES)

PRODUCTS_PER_CATEGORY: Final = 2_000
"""Catalog size per category; product ``k`` of category ``c`` is ``P<c>-<k:05d>``."""
PRODUCT_POPULARITY_EXPONENT: Final = 2.0
"""Product index ``floor(n * u**2)``: low indices are the best sellers."""

DEVICE_WEIGHTS: Final = dict(zip(DEVICES, (0.34, 0.56, 0.10), strict=True))
COUNTRY_WEIGHTS: Final = dict(
    zip(COUNTRIES, (0.36, 0.12, 0.11, 0.08, 0.14, 0.09, 0.06, 0.04), strict=True)
)
DEVICE_STICKINESS: Final = 0.8
"""Share of a user's sessions on their own primary device; the rest draw a device afresh."""
FAVOURITE_CATEGORY_SHARE: Final = 0.5
"""Share of a user's sessions in their favourite category; the rest follow CATEGORY weights."""

HOUR_WEIGHTS: Final = (
    # UTC hour 0..23: quiet nights, a lunchtime bump, an evening peak.
    1.2, 0.8, 0.5, 0.4, 0.4, 0.5, 0.9, 1.6, 2.4, 3.0, 3.3, 3.5,
    4.0, 4.1, 3.7, 3.5, 3.6, 4.0, 4.8, 5.6, 6.0, 5.5, 4.2, 2.4,
)  # fmt: skip
WEEKDAY_WEIGHTS: Final = (1.00, 0.96, 0.97, 1.00, 1.08, 1.30, 1.22)
"""Monday..Sunday: a day's share of the rows is proportional to its weight."""

USER_RANK_OFFSET: Final = 0.005
"""Users are Zipf-Mandelbrot: the user at rank fraction ``x`` in [0, 1) is drawn with density
``1 / (x + 0.005)``, so the busiest user is ~100 times as active as the median one, the top 1%
of users hold ~21% of the sessions and the top 10% ~57%, at any number of users."""
ROWS_PER_USER: Final = 40
MIN_USERS: Final = 50

SESSION_BLOCK: Final = 32
"""Rows are cut into blocks of 32; each row after the first of a block starts a new session
with probability :data:`SESSION_BREAK_PROBABILITY`, so sessions are geometric (mean ~4)."""
SESSION_BREAK_PROBABILITY: Final = 0.25
PACE_SECONDS: Final = (15, 120)
"""Per session, seconds between consecutive events, drawn uniformly from this range."""


@dataclass(frozen=True)
class PurchaseSignal:
    """Log-odds terms of a session's funnel: view -> cart -> purchase.

    ``P(cart) = sigmoid(cart_base + propensity + device + country + hour + price_term)`` and
    ``P(purchase | cart) = sigmoid(purchase_base + propensity + 1.5 * device + hour / 2 +
    price_term)``, where ``price_term = price_slope * ln(price / category median)`` of the
    session's target product.
    """

    cart_base: float = -1.8
    purchase_base: float = -0.3
    propensity_sd: float = 0.7
    propensity_activity: float = 0.6
    activity_centre: float = 2.0
    price_slope: float = -0.9
    device: tuple[tuple[str, float], ...] = (("desktop", 0.7), ("mobile", -0.5), ("tablet", 0.0))
    country: tuple[tuple[str, float], ...] = (
        ("US", 0.3),
        ("GB", 0.2),
        ("DE", 0.1),
        ("FR", 0.0),
        ("IN", -0.7),
        ("BR", -0.4),
        ("JP", 0.1),
        ("CA", 0.2),
    )
    hour: tuple[tuple[range, float], ...] = ((range(0, 6), -0.6), (range(18, 23), 0.5))
    """Hours not listed add nothing."""

    def hour_effect(self, hour: int) -> float:
        """The log-odds term of a UTC hour of day."""
        return sum(effect for hours, effect in self.hour if hour in hours)


SIGNAL: Final = PurchaseSignal()


@dataclass(frozen=True)
class ConceptShift:
    """A planted concept shift: from the run's day ``from_day`` (0 is its first date) on, the
    device and price terms of both funnel logits are multiplied by these factors.

    The defaults reverse them: desktop buys less than mobile and dearer-than-usual targets
    sell better, so a model trained before the shift ranks the shifted days' sessions worse
    (its holdout AUC does not hold) while the features themselves keep their distributions.
    Rows before ``from_day`` are the same as without the shift.
    """

    from_day: int
    device_factor: float = -2.0
    price_factor: float = -1.0

    def __post_init__(self) -> None:
        if self.from_day < 0:
            msg = f"concept shift: from_day must be >= 0, got {self.from_day}"
            raise ValueError(msg)


def normalised(weights: dict[str, float] | tuple[float, ...]) -> tuple[float, ...]:
    """Weights scaled to sum to 1, in their order."""
    values = tuple(weights.values()) if isinstance(weights, dict) else tuple(weights)
    total = sum(values)
    if total <= 0 or any(value < 0 for value in values):
        msg = f"weights must be non-negative with a positive sum, got {values}"
        raise ValueError(msg)
    return tuple(value / total for value in values)


def cumulative(weights: dict[str, float] | tuple[float, ...]) -> tuple[float, ...]:
    """Upper edges of each value's slice of [0, 1): draw ``u`` picks the first edge above it.

    The last edge is exactly 1.0, so no draw falls off the end through rounding.
    """
    edges: list[float] = []
    running = 0.0
    for share in normalised(weights):
        running += share
        edges.append(running)
    edges[-1] = 1.0
    return tuple(edges)


def user_count(rows: int) -> int:
    """How many users a run of ``rows`` events draws from (more rows, more users)."""
    return max(MIN_USERS, rows // ROWS_PER_USER)
