"""NAB scoring rules on tiny synthetic files whose right answers follow from the rules."""

from __future__ import annotations

import numpy as np
import pytest

from lakecast.monitoring import nab

STANDARD = nab.PROFILES["standard"]
LOW_FN = nab.PROFILES["reward_low_FN_rate"]

# 100 rows: probation is 15 rows; one window over rows 40..49 (width 10).
N, LEFT, RIGHT = 100, 40, 49


def one_window() -> nab.LabelledFile:
    return nab.label_rows("synthetic.csv", N, [(LEFT, RIGHT)])


def detections_at(*rows: int) -> np.ndarray:
    scores = np.zeros(N)
    scores[list(rows)] = 1.0
    return scores


def test_probation_length_follows_the_rule() -> None:
    assert nab.probation_length(100) == 15
    assert nab.probation_length(4032) == 604
    assert nab.probation_length(15902) == 750


def test_detection_at_window_start_scores_one_true_positive() -> None:
    assert nab.file_score(one_window(), detections_at(LEFT), 0.5, STANDARD) == pytest.approx(1.0)


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    both = nab.file_score(one_window(), detections_at(LEFT, RIGHT), 0.5, STANDARD)
    assert both == pytest.approx(1.0)


def test_later_detection_in_window_scores_less() -> None:
    late = nab.file_score(one_window(), detections_at(RIGHT), 0.5, STANDARD)
    expected = float(nab.scaled_sigmoid(-1.0 / 10)) / nab.MAX_TP
    assert late == pytest.approx(expected)
    assert 0.0 < late < 1.0


def test_missed_window_scores_minus_a_fn() -> None:
    empty = np.zeros(N)
    assert nab.file_score(one_window(), empty, 0.5, STANDARD) == pytest.approx(-1.0)
    assert nab.file_score(one_window(), empty, 0.5, LOW_FN) == pytest.approx(-2.0)


def test_false_positive_before_or_far_after_a_window_scores_minus_a_fp() -> None:
    early_fp = nab.file_score(one_window(), detections_at(20, LEFT), 0.5, STANDARD)
    assert early_fp == pytest.approx(1.0 - STANDARD.a_fp)
    # More than 3 widths (of 9 rows after the right edge) away: the full penalty.
    far = RIGHT + 3 * 9 + 1
    far_fp = nab.file_score(one_window(), detections_at(LEFT, far), 0.5, STANDARD)
    assert far_fp == pytest.approx(1.0 - STANDARD.a_fp)


def test_false_positive_just_after_a_window_is_penalised_less() -> None:
    near = nab.file_score(one_window(), detections_at(LEFT, RIGHT + 1), 0.5, STANDARD)
    expected_fp = STANDARD.a_fp * float(nab.scaled_sigmoid(1.0 / 9))
    assert near == pytest.approx(1.0 + expected_fp)
    assert -STANDARD.a_fp < expected_fp < 0.0


def test_probation_rows_are_ignored() -> None:
    assert nab.file_score(one_window(), detections_at(3, LEFT), 0.5, STANDARD) == pytest.approx(1.0)


def test_normalisation_perfect_is_100_and_null_is_0() -> None:
    labelled = one_window()
    perfect = nab.sweep([labelled], [detections_at(LEFT)], STANDARD).best()[1]
    null = nab.sweep([labelled], [np.full(N, 0.5)], STANDARD).best()[1]
    assert nab.normalised(perfect, 1, STANDARD) == pytest.approx(100.0)
    assert nab.normalised(null, 1, STANDARD) == pytest.approx(0.0)


def test_sweep_picks_the_threshold_that_skips_a_false_alarm() -> None:
    # The false alarm (row 20) scores 0.9, the window start 0.8: 0.8 would also take the FP,
    # so the best threshold is 0.8 only if the TP outweighs the FP, which it does.
    scores = np.zeros(N)
    scores[20], scores[LEFT] = 0.9, 0.8
    threshold, total = nab.sweep([one_window()], [scores], STANDARD).best()
    assert threshold == pytest.approx(0.8)
    assert total == pytest.approx(1.0 - STANDARD.a_fp)


def test_sweep_agrees_with_direct_scoring_at_every_threshold() -> None:
    rng = np.random.default_rng(7)
    files = [one_window(), nab.label_rows("two.csv", N, [(30, 39), (70, 79)])]
    scores = [rng.random(N).round(2) for _ in files]
    for profile in nab.PROFILES.values():
        result = nab.sweep(files, scores, profile)
        for threshold, total in zip(result.thresholds, result.totals, strict=True):
            direct = sum(
                nab.file_score(f, s, threshold, profile) for f, s in zip(files, scores, strict=True)
            )
            assert total == pytest.approx(direct)


def test_window_rows_match_timestamps() -> None:
    stamps = np.arange("2024-01-01T00:00", "2024-01-01T01:40", 10, dtype="datetime64[m]")
    rows = nab.window_rows(
        stamps.astype("datetime64[ns]"), [("2024-01-01 00:20:00.000000", "2024-01-01 00:50:00")]
    )
    assert rows == [(2, 5)]


def test_cross_validation_tunes_on_the_other_groups_and_pools_the_held_out_raw_scores() -> None:
    # Group "a": the window start scores 0.8 and a false alarm 0.9; group "b": the window
    # start scores 0.6. Tuned on "b", the threshold 0.6 takes both of "a"'s detections.
    a = one_window()
    b = nab.label_rows("b.csv", N, [(LEFT, RIGHT)])
    scores_a = np.zeros(N)
    scores_a[20], scores_a[LEFT] = 0.9, 0.8
    scores_b = np.zeros(N)
    scores_b[LEFT] = 0.6
    result = nab.cross_validate([a, b], {"only": [scores_a, scores_b]}, STANDARD, ["a", "b"])
    fold_a, fold_b = result.folds
    assert (fold_a.held_out, fold_a.threshold) == ("a", pytest.approx(0.6))
    assert fold_a.raw == pytest.approx(1.0 - STANDARD.a_fp)
    # Tuned on "a", the best threshold is 0.8, over "b"'s 0.6: its window is missed.
    assert (fold_b.held_out, fold_b.threshold) == ("b", pytest.approx(0.8))
    assert fold_b.raw == pytest.approx(-1.0)
    assert result.n_windows == 2
    assert result.score == pytest.approx(nab.normalised(-STANDARD.a_fp, 2, STANDARD))


def test_cross_validation_chooses_the_setting_from_the_training_groups_only() -> None:
    a = one_window()
    b = nab.label_rows("b.csv", N, [(LEFT, RIGHT)])
    hit = detections_at(LEFT)
    miss = np.zeros(N)
    # "good" finds b's window and misses a's; "bad" the reverse. Each fold picks the
    # setting that was right on the other group, so both held-out windows are missed.
    candidates = {"good": [miss, hit], "bad": [hit, miss]}
    result = nab.cross_validate([a, b], candidates, STANDARD, ["a", "b"])
    assert [f.setting for f in result.folds] == ["good", "bad"]
    assert [f.raw for f in result.folds] == [pytest.approx(-1.0), pytest.approx(-1.0)]
    assert result.score == pytest.approx(0.0)
