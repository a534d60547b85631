"""How a run's rows are spread over its days: weekly seasonality, whole sessions per day.

Rows are generated in id order and each day owns one contiguous range of session blocks, so a
Spark partition (a contiguous id range) touches one or two dates and the partitioned Delta write
stays cheap. A day's share of the blocks follows :data:`~lakecast.data.world.WEEKDAY_WEIGHTS`.
"""

from __future__ import annotations

import datetime as dt

from lakecast.data.world import WEEKDAY_WEIGHTS, normalised

DEFAULT_START_DATE = dt.date(2026, 1, 1)
"""A fixed default, so that the same arguments always give the same table."""
MAX_DAYS = 3_660


def run_dates(start_date: dt.date, days: int) -> list[dt.date]:
    """The ``days`` consecutive dates of a run, from ``start_date``."""
    return [start_date + dt.timedelta(days=offset) for offset in range(days)]


def day_block_bounds(blocks: int, start_date: dt.date, days: int) -> tuple[int, ...]:
    """Exclusive upper block index of each day: day ``d`` owns ``[bounds[d-1], bounds[d])``.

    Shares are proportional to the weekday weights; the bounds are non-decreasing and the last
    one is exactly ``blocks``. A day can own no block when there are fewer blocks than days.
    """
    if blocks < 0 or days < 1:
        msg = f"day_block_bounds: need blocks >= 0 and days >= 1, got {blocks} and {days}"
        raise ValueError(msg)
    shares = normalised(
        tuple(WEEKDAY_WEIGHTS[day.weekday()] for day in run_dates(start_date, days))
    )
    bounds: list[int] = []
    running = 0.0
    for share in shares:
        running += share
        bounds.append(min(blocks, round(blocks * running)))
    bounds[-1] = blocks
    return tuple(bounds)
