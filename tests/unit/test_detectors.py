"""Every registered detector is causal, bounded, incremental and buildable by name."""

from __future__ import annotations

import numpy as np
import pytest

from lakecast.errors import ConfigError
from lakecast.monitoring.detectors import DETECTORS, Detector, make_detector

# Small settings so every detector gets past its warm-up inside a short series.
SMALL: dict[str, dict[str, int]] = {
    "isolation_forest": {"refit_every": 40, "train_size": 120, "n_estimators": 10},
    "windowed_gaussian": {"window": 60, "step": 10},
}


def series(n: int = 360, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    values = 10 + np.sin(t / 8) + 0.1 * rng.standard_normal(n)
    values[250:256] += 6.0  # a burst the detectors should notice
    return 1.7e9 + 300 * t, values


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_scores_are_causal_prefix_stable(name: str) -> None:
    stamps, values = series()
    full = make_detector(name, **SMALL.get(name, {})).score_series(stamps, values)
    for cut in (97, 251, 300):
        prefix = make_detector(name, **SMALL.get(name, {})).score_series(stamps[:cut], values[:cut])
        np.testing.assert_array_equal(prefix, full[:cut])


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_update_matches_score_series_and_stays_in_unit_interval(name: str) -> None:
    stamps, values = series()
    batch = make_detector(name, **SMALL.get(name, {})).score_series(stamps, values)
    online = make_detector(name, **SMALL.get(name, {}))
    assert isinstance(online, Detector)
    incremental = np.array([online.update(t, v) for t, v in zip(stamps, values, strict=True)])
    np.testing.assert_allclose(incremental, batch)
    assert np.all((incremental >= 0.0) & (incremental <= 1.0))


@pytest.mark.parametrize("name", sorted(set(DETECTORS) - {"null", "random"}))
def test_a_burst_scores_above_the_quiet_stretch_before_it(name: str) -> None:
    stamps, values = series()
    scores = make_detector(name, **SMALL.get(name, {})).score_series(stamps, values)
    assert scores[250:256].max() > np.quantile(scores[150:245], 0.95)


def test_nan_values_score_zero_and_leave_state_alone() -> None:
    stamps, values = series(200)
    clean = make_detector("gaussian_tail").score_series(stamps, values)
    gappy_values = np.insert(values, 120, np.nan)
    gappy_stamps = np.insert(stamps, 120, stamps[120] - 1)
    gappy = make_detector("gaussian_tail").score_series(gappy_stamps, gappy_values)
    assert gappy[120] == 0.0
    np.testing.assert_array_equal(np.delete(gappy, 120), clean)


def test_unknown_detector_name_is_refused_with_the_known_names() -> None:
    with pytest.raises(ConfigError, match="isolation_forest"):
        make_detector("no_such_detector")
