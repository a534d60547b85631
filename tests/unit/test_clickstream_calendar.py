"""How a run's session blocks are spread over its days."""

from __future__ import annotations

import datetime as dt

import pytest

from lakecast.data.calendar import day_block_bounds, run_dates
from lakecast.data.world import WEEKDAY_WEIGHTS

MONDAY = dt.date(2026, 3, 2)


def _per_day(bounds: tuple[int, ...]) -> list[int]:
    return [high - low for low, high in zip((0, *bounds), bounds, strict=False)]


def test_run_dates_are_consecutive() -> None:
    assert run_dates(dt.date(2026, 2, 27), 3) == [
        dt.date(2026, 2, 27),
        dt.date(2026, 2, 28),
        dt.date(2026, 3, 1),
    ]


def test_bounds_cover_every_block_once() -> None:
    bounds = day_block_bounds(1_000, MONDAY, 7)
    assert len(bounds) == 7
    assert bounds[-1] == 1_000
    assert list(bounds) == sorted(bounds)
    assert sum(_per_day(bounds)) == 1_000


def test_weekends_get_more_blocks_in_proportion_to_their_weight() -> None:
    per_day = _per_day(day_block_bounds(1_000_000, MONDAY, 14))
    saturday, monday = per_day[5], per_day[0]
    assert saturday / monday == pytest.approx(WEEKDAY_WEIGHTS[5] / WEEKDAY_WEIGHTS[0], rel=1e-4)
    assert per_day[:7] == pytest.approx(per_day[7:], abs=1)


def test_fewer_blocks_than_days_leaves_days_empty_but_valid() -> None:
    bounds = day_block_bounds(2, MONDAY, 5)
    assert bounds[-1] == 2
    assert list(bounds) == sorted(bounds)
    assert sum(_per_day(bounds)) == 2


@pytest.mark.parametrize(("blocks", "days"), [(-1, 3), (10, 0)])
def test_invalid_arguments_are_refused(blocks: int, days: int) -> None:
    with pytest.raises(ValueError, match="day_block_bounds"):
        day_block_bounds(blocks, MONDAY, days)
