"""Contextual novelty, the max ensemble and the spike-plus-novelty hybrid."""

from __future__ import annotations

import numpy as np
import pytest

from lakecast.monitoring.detectors import make_detector
from lakecast.monitoring.detectors.base import BaseDetector
from lakecast.monitoring.detectors.context import ContextNoveltyDetector
from lakecast.monitoring.detectors.ensemble import MaxEnsemble


def stamps(n: int) -> np.ndarray:
    return 1.7e9 + 300.0 * np.arange(n, dtype=float)


def sawtooth(n: int, period: int = 6, top: float = 5.0) -> np.ndarray:
    return top * (np.arange(n) % period) / (period - 1)


class Constant(BaseDetector):
    """A member that always says the same thing (to check the ensemble's arithmetic)."""

    def __init__(self, score: float) -> None:
        self.score = score

    def _update(self, ts: float, value: float) -> float:
        return self.score


def test_a_learned_pattern_stops_being_novel_and_a_new_level_is() -> None:
    values = np.append(sawtooth(400), [2.5])  # a level between the sawtooth's steps
    scores = ContextNoveltyDetector(levels=11, learn=30, rest=0).score_series(
        stamps(values.size), values
    )
    assert scores[60:400].max() == 0.0
    assert scores[-1] == 1.0


def test_a_changed_rhythm_within_the_usual_range_is_novel() -> None:
    values = np.concatenate([sawtooth(300), sawtooth(30, period=3)])
    scores = ContextNoveltyDetector(levels=6, learn=30, rest=0).score_series(
        stamps(values.size), values
    )
    assert scores[60:300].max() == 0.0
    assert scores[300:].max() > 0.5


def test_widening_the_range_relearns_the_memory_instead_of_flagging_the_old_pattern() -> None:
    values = sawtooth(400)
    values[200] = 10.0  # one spike: the range doubles and every level changes
    scores = ContextNoveltyDetector(levels=8, learn=30, rest=0).score_series(
        stamps(values.size), values
    )
    assert scores[200] == 1.0
    # Re-quantised with the wider range, the sawtooth is the old pattern, not a new one
    # (only the points whose history holds the spike are novel).
    assert scores[200 + 4 :].max() == 0.0


def test_context_novelty_rests_after_an_alarm() -> None:
    values = np.concatenate([sawtooth(200), [40.0, -40.0, 80.0], sawtooth(50)])
    detector = ContextNoveltyDetector(levels=8, learn=30, rest=10, alarm=1.0)
    scores = detector.score_series(stamps(values.size), values)
    assert scores[200] == 1.0
    assert scores[201:211].max() == 0.0


def test_context_novelty_refuses_a_bad_setting() -> None:
    with pytest.raises(ValueError, match="levels"):
        ContextNoveltyDetector(levels=1)


def test_max_ensemble_takes_the_surest_member_with_a_share_of_the_mean() -> None:
    members = [Constant(0.2), Constant(0.8)]
    assert MaxEnsemble(members).update(0.0, 1.0) == pytest.approx(0.8)
    assert MaxEnsemble(members, tie=0.5).update(0.0, 1.0) == pytest.approx(0.5 * 0.8 + 0.5 * 0.5)
    assert MaxEnsemble(members, [2.0, 1.0]).update(0.0, 1.0) == pytest.approx(0.8)


def test_hybrid_pages_once_for_a_spike_in_a_noisy_cycle() -> None:
    rng = np.random.default_rng(5)
    n = 700
    t = np.arange(n, dtype=float)
    values = 10 + 2 * np.sin(2 * np.pi * t / 48) + 0.2 * rng.standard_normal(n)
    values[600:604] += 15.0
    scores = make_detector("hybrid", rest=50).score_series(stamps(n), values)
    assert int(np.argmax(scores)) == 600
    # The rest period: after the alarm the rest of the incident stays quiet.
    assert scores[601:650].max() == 0.0
    assert scores[300:600].max() < scores[600]


@pytest.mark.parametrize("name", ["context_novelty", "hybrid"])
def test_new_detectors_are_prefix_stable_on_a_series_that_widens_its_range(name: str) -> None:
    rng = np.random.default_rng(8)
    values = np.cumsum(rng.standard_normal(600))  # a random walk keeps widening the range
    full = make_detector(name).score_series(stamps(600), values)
    for cut in (151, 333):
        prefix = make_detector(name).score_series(stamps(cut), values[:cut])
        np.testing.assert_array_equal(prefix, full[:cut])
    assert np.all((full >= 0.0) & (full <= 1.0))
