"""PSI and KS on small real samples: hand-computed values, scipy's KS, planted shifts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import ks_2samp

from lakecast.errors import DataError
from lakecast.monitoring.drift.statistics import (
    EMPTY_BIN_SHARE,
    bin_shares,
    compare_features,
    ks_statistic,
    psi,
)

pytestmark = pytest.mark.unit


def test_psi_of_a_flag_is_the_textbook_sum_by_hand() -> None:
    reference = np.array([0.0] * 80 + [1.0] * 20)
    live = np.array([0.0] * 50 + [1.0] * 50)
    expected = (0.5 - 0.8) * math.log(0.5 / 0.8) + (0.5 - 0.2) * math.log(0.5 / 0.2)
    # The third bin (values the reference never took) is empty on both sides: adds 0.
    assert psi(reference, live) == pytest.approx(expected, rel=1e-12)


def test_a_value_the_training_set_never_had_gets_its_own_bin() -> None:
    expected, actual = bin_shares(np.array([0.0, 1.0, 1.0, 0.0]), np.array([0.0, 2.0]), bins=10)
    assert expected.tolist() == [0.5, 0.5, 0.0]
    assert actual.tolist() == [0.5, 0.0, 0.5]
    floor = EMPTY_BIN_SHARE
    by_hand = (
        (0.5 - 0.5) * 0
        + (floor - 0.5) * math.log(floor / 0.5)
        + (0.5 - floor) * math.log(0.5 / floor)
    )
    assert psi(np.array([0.0, 1.0, 1.0, 0.0]), np.array([0.0, 2.0])) == pytest.approx(by_hand)


def test_quantile_bins_hold_equal_shares_of_the_reference() -> None:
    reference = np.random.default_rng(0).standard_normal(10_000)
    expected, _ = bin_shares(reference, reference[:10], bins=10)
    assert expected == pytest.approx(np.full(10, 0.1), abs=1e-3)


def test_same_distribution_is_stable_and_a_shift_is_not() -> None:
    rng = np.random.default_rng(1)
    reference = rng.standard_normal(20_000)
    same = rng.standard_normal(2_000)
    shifted = rng.standard_normal(2_000) + 0.5
    assert psi(reference, same) < 0.02
    assert psi(reference, shifted) > 0.2
    assert ks_statistic(reference, same) < 0.05
    assert ks_statistic(reference, shifted) > 0.15


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ks_equals_scipys_two_sample_statistic(seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference = np.round(rng.exponential(2.0, 700), 1)  # ties on purpose
    live = np.round(rng.exponential(2.5, 300), 1)
    assert ks_statistic(reference, live) == pytest.approx(ks_2samp(reference, live).statistic)


def test_compare_features_flags_the_drifted_feature_only() -> None:
    rng = np.random.default_rng(2)
    reference = {"a": rng.standard_normal(5_000), "b": rng.standard_normal(5_000)}
    live = {"a": rng.standard_normal(500), "b": rng.standard_normal(500) * 3}
    found = compare_features(reference, live, psi_threshold=0.2, ks_threshold=0.1, bins=10)
    assert [(d.feature, d.drifted) for d in found] == [("a", False), ("b", True)]
    assert (found[1].rows, found[1].reference_rows) == (500, 5_000)


def test_missing_reference_column_and_empty_sides_are_named() -> None:
    with pytest.raises(DataError, match=r"no column for features \['z'\]"):
        compare_features({}, {"z": np.ones(3)}, psi_threshold=0.2, ks_threshold=0.1, bins=10)
    with pytest.raises(DataError, match=r"feature 'y'.*0 reference and 2 live"):
        compare_features(
            {"y": np.array([np.nan])},
            {"y": np.ones(2)},
            psi_threshold=0.2,
            ks_threshold=0.1,
            bins=10,
        )
