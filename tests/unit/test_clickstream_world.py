"""The generator's fixed world: weights, price laws and the documented signal terms."""

from __future__ import annotations

import itertools
import math

import pytest

from lakecast.data import world
from lakecast.features.vocab import CATEGORIES, COUNTRIES, DEVICES


def test_cumulative_edges_rise_to_exactly_one() -> None:
    edges = world.cumulative(world.HOUR_WEIGHTS)
    assert len(edges) == 24
    assert all(a < b for a, b in itertools.pairwise(edges))
    assert edges[-1] == 1.0
    shares = world.normalised(world.HOUR_WEIGHTS)
    assert edges[0] == pytest.approx(shares[0])
    assert edges[11] == pytest.approx(sum(shares[:12]))


def test_cumulative_keeps_dictionary_order() -> None:
    edges = world.cumulative({"a": 1.0, "b": 3.0})
    assert edges == pytest.approx((0.25, 1.0))


@pytest.mark.parametrize("weights", [(0.0, 0.0), (1.0, -0.5), ()])
def test_invalid_weights_are_refused(weights: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="weights"):
        world.cumulative(weights)


def test_the_world_covers_the_feature_vocabularies() -> None:
    assert tuple(c.name for c in world.CATEGORY_TABLE) == CATEGORIES
    assert tuple(world.DEVICE_WEIGHTS) == DEVICES
    assert tuple(world.COUNTRY_WEIGHTS) == COUNTRIES
    assert {name for name, _ in world.SIGNAL.device} == set(DEVICES)
    assert {name for name, _ in world.SIGNAL.country} == set(COUNTRIES)


def test_log_normal_mean_is_above_the_median() -> None:
    books = next(c for c in world.CATEGORY_TABLE if c.name == "books")
    assert books.mean_price == pytest.approx(15.0 * math.exp(0.4**2 / 2))
    assert all(c.mean_price > c.median_price > 0 for c in world.CATEGORY_TABLE)


def test_hour_effect_rewards_evenings_and_penalises_nights() -> None:
    signal = world.SIGNAL
    assert signal.hour_effect(20) == 0.5
    assert signal.hour_effect(3) == -0.6
    assert signal.hour_effect(12) == 0.0
    assert signal.hour_effect(23) == 0.0


def test_more_rows_draw_from_more_users() -> None:
    assert world.user_count(10) == world.MIN_USERS
    assert world.user_count(10_000_000) == 250_000
