"""A generator run's arguments, seeds, partitioning and the slice of the table it owns."""

from __future__ import annotations

import datetime as dt

import pytest

from lakecast.data.calendar import DEFAULT_START_DATE
from lakecast.data.clickstream import ClickstreamRun, partitions_for
from lakecast.data.events_table import run_predicate
from lakecast.errors import ConfigError
from lakecast.lake.delta import date_range_predicate


@pytest.mark.parametrize(
    ("rows", "days", "seed", "field"),
    [(0, 1, 0, "rows"), (10, 0, 0, "days"), (10, 4000, 0, "days"), (10, 1, -1, "seed")],
)
def test_out_of_range_arguments_name_the_field(rows: int, days: int, seed: int, field: str) -> None:
    with pytest.raises(ConfigError, match=f"generate_events: {field}"):
        ClickstreamRun(rows, days, seed)


def test_the_default_start_is_fixed() -> None:
    run = ClickstreamRun(100, 3)
    assert run.start_date == DEFAULT_START_DATE == dt.date(2026, 1, 1)
    assert run.end_date == dt.date(2026, 1, 3)


def test_seeds_are_stable_and_scoped() -> None:
    run = ClickstreamRun(1_000, 7, 42)
    assert run.stream_seed == ClickstreamRun(1_000, 7, 42).stream_seed
    assert 0 <= run.stream_seed < 2**63 and 0 <= run.world_seed < 2**63
    later = ClickstreamRun(1_000, 7, 42, dt.date(2026, 1, 8))
    assert later.world_seed == run.world_seed  # the same users and products
    assert later.stream_seed != run.stream_seed  # other sessions
    assert later.run_tag != run.run_tag
    assert ClickstreamRun(1_000, 7, 43).world_seed != run.world_seed
    assert len(run.run_tag) == 10


def test_partitions_are_a_multiple_of_the_cores() -> None:
    assert partitions_for(20_000, 2) == 2
    assert partitions_for(10_000_000, 2) == 10
    assert partitions_for(10_000_001, 2) == 12
    assert partitions_for(100_000_000, 16) == 112
    assert partitions_for(5, 0) == 1


def test_a_run_owns_its_dates() -> None:
    run = ClickstreamRun(100, 3, 0, dt.date(2026, 2, 27))
    assert run_predicate(run) == "`date` >= DATE'2026-02-27' AND `date` <= DATE'2026-03-01'"


def test_a_date_range_must_not_run_backwards() -> None:
    with pytest.raises(ValueError, match="before first"):
        date_range_predicate("date", dt.date(2026, 1, 2), dt.date(2026, 1, 1))
