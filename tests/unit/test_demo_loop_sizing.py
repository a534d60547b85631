"""The demo loop's load is sized from a worker's measured capacity, so the fleet must scale."""

from __future__ import annotations

import pytest

from lakecast.autoscaling.simulate import load_worker_model
from lakecast.demo.loop import SPIKE_MOST_S, sized_phases


def test_the_spike_is_far_more_than_one_worker_drains_between_two_evaluations() -> None:
    steady, spike, after = sized_phases(10_000.0)
    assert (steady.name, spike.name, after.name) == ("steady", "spike", "steady")
    assert steady.rate == after.rate == pytest.approx(1_000.0)  # one worker, CPU low
    assert spike.rate is None  # as fast as the producer goes
    assert spike.events == 250_000  # 25 s of one worker's work
    assert spike.most_s == SPIKE_MOST_S
    assert steady.events == 40_000 and after.events == 30_000


def test_the_shipped_capacity_figure_sizes_the_demo() -> None:
    capacity = load_worker_model().capacity
    assert sized_phases(capacity)[1].events == round(25 * capacity)
    with pytest.raises(ValueError, match="capacity must be positive"):
        sized_phases(0.0)
