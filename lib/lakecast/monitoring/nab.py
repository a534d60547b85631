"""Numenta Anomaly Benchmark (NAB) scoring, reimplemented from NAB's documented rules.

NAB rewards early detection inside labelled anomaly windows and penalises false alarms,
less so shortly after a window. Each row outside the probation period gets a weight:

- inside a window: ``A_TP * sigma(y) / sigma(-1)`` with ``y = -(right - i + 1) / width``;
  only the window's earliest detection counts (later ones in the window are free);
- outside: ``A_FP * sigma(d / (prev_width - 1))`` after a window (``-A_FP`` once that ratio
  passes 3), ``-A_FP`` before any window;
- a window with no detection scores ``-A_FN``.

with ``sigma(y) = 2 / (1 + exp(5 y)) - 1``. One threshold per detector and profile, the
same for every file, is chosen by sweeping all distinct scores, as NAB's sweeper does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lakecast.errors import DataError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

OUTSIDE = -1
PROBATION = -2


@dataclass(frozen=True)
class Profile:
    """An application profile: the weights of true positives, false positives and misses."""

    name: str
    a_tp: float
    a_fp: float
    a_fn: float


PROFILES: dict[str, Profile] = {
    "standard": Profile("standard", a_tp=1.0, a_fp=0.11, a_fn=1.0),
    "reward_low_FP_rate": Profile("reward_low_FP_rate", a_tp=1.0, a_fp=0.22, a_fn=1.0),
    "reward_low_FN_rate": Profile("reward_low_FN_rate", a_tp=1.0, a_fp=0.11, a_fn=2.0),
}


def scaled_sigmoid(y: float | FloatArray) -> FloatArray:
    """NAB's ``2 / (1 + exp(5 y)) - 1``, and -1 beyond ``y > 3`` (far after a window)."""
    arr = np.asarray(y, dtype=np.float64)
    out = 2.0 / (1.0 + np.exp(5.0 * np.minimum(arr, 50.0))) - 1.0
    return np.where(arr > 3.0, -1.0, out)


MAX_TP = float(scaled_sigmoid(-1.0))


def probation_length(n_rows: int) -> int:
    """Rows at the start of a file that are never scored: ``min(floor(0.15 n), 750)``."""
    return min(math.floor(0.15 * n_rows), 750)


@dataclass(frozen=True)
class LabelledFile:
    """One file's row layout for scoring.

    ``unweighted`` is the row's sigmoid value (positive in windows, the FP curve outside);
    ``window`` is the row's window number within the file, ``OUTSIDE`` or ``PROBATION``.
    """

    name: str
    unweighted: FloatArray
    window: IntArray
    n_windows: int


def label_rows(name: str, n_rows: int, windows: Sequence[tuple[int, int]]) -> LabelledFile:
    """Lay out NAB's per-row weights for a file of ``n_rows`` with inclusive row windows."""
    unweighted = np.empty(n_rows, dtype=np.float64)
    window = np.full(n_rows, OUTSIDE, dtype=np.int64)
    idx = np.arange(n_rows, dtype=np.float64)
    ordered = sorted(windows)
    cursor = 0
    prev_right: int | None = None
    prev_width = 0.0
    for number, (left, right) in enumerate([*ordered, (n_rows, n_rows)]):
        gap = slice(cursor, left)
        if prev_right is None:
            unweighted[gap] = -1.0
        else:
            unweighted[gap] = scaled_sigmoid((idx[gap] - prev_right) / max(prev_width - 1.0, 1.0))
        if left >= n_rows:
            break
        width = float(right - left + 1)
        rows = slice(left, right + 1)
        unweighted[rows] = scaled_sigmoid(-(right - idx[rows] + 1.0) / width)
        window[rows] = number
        prev_right, prev_width, cursor = right, width, right + 1
    window[: probation_length(n_rows)] = PROBATION
    return LabelledFile(name, unweighted, window, len(ordered))


def window_rows(
    timestamps: npt.NDArray[np.datetime64], windows: Sequence[tuple[str, str]]
) -> list[tuple[int, int]]:
    """Map ``[start, end]`` timestamp windows onto inclusive row indices of a file."""
    out = []
    for start, end in windows:
        left = int(np.searchsorted(timestamps, np.datetime64(start), side="left"))
        right = int(np.searchsorted(timestamps, np.datetime64(end), side="right")) - 1
        out.append((left, min(right, len(timestamps) - 1)))
    return out


@dataclass(frozen=True)
class Sweep:
    """The total NAB score of every candidate threshold (detect when score >= threshold)."""

    thresholds: FloatArray
    totals: FloatArray

    def best(self) -> tuple[float, float]:
        """The threshold with the highest total and that total (ties: the higher threshold)."""
        k = int(np.argmax(self.totals))
        return float(self.thresholds[k]), float(self.totals[k])


def _weights(files: Sequence[LabelledFile], profile: Profile) -> tuple[FloatArray, IntArray]:
    weights, windows = [], []
    offset = 0
    for f in files:
        in_window = f.window >= 0
        weights.append(
            np.where(in_window, profile.a_tp * f.unweighted / MAX_TP, profile.a_fp * f.unweighted)
        )
        windows.append(np.where(in_window, f.window + offset, f.window))
        offset += f.n_windows
    return np.concatenate(weights), np.concatenate(windows)


def sweep(files: Sequence[LabelledFile], scores: Sequence[FloatArray], profile: Profile) -> Sweep:
    """Score every threshold over all files at once, as NAB's threshold optimiser does."""
    weight, window = _weights(files, profile)
    score = np.concatenate([np.asarray(s, dtype=np.float64) for s in scores])
    if score.shape != weight.shape:
        msg = f"NAB sweep: {score.size} scores for {weight.size} labelled rows"
        raise ValueError(msg)
    keep = window != PROBATION
    weight, window, score = weight[keep], window[keep], score[keep]
    n_windows = sum(f.n_windows for f in files)
    order = np.argsort(-score, kind="stable")
    weight, window, score = weight[order], window[order], score[order]

    fp_gain = np.where(window == OUTSIDE, weight, 0.0)
    # A window's part rises from -A_FN to its best (earliest) detection so far.
    window_gain = np.zeros_like(weight)
    best = np.full(n_windows, -profile.a_fn)
    for k in np.flatnonzero(window >= 0):
        w = window[k]
        if weight[k] > best[w]:
            window_gain[k] = weight[k] - best[w]
            best[w] = weight[k]
    totals = -profile.a_fn * n_windows + np.cumsum(fp_gain + window_gain)
    # Only the last row of each run of equal scores is a reachable threshold.
    ends = np.flatnonzero(np.append(score[1:] != score[:-1], True)) if score.size else score
    thresholds = np.concatenate([[np.inf], score[ends]])
    return Sweep(thresholds, np.concatenate([[-profile.a_fn * n_windows], totals[ends]]))


def file_score(
    labelled: LabelledFile, scores: FloatArray, threshold: float, profile: Profile
) -> float:
    """The NAB score of one file at a fixed threshold, straight from the rules.

    Written independently of ``sweep`` (per window, earliest hit), so each checks the other.
    """
    weight, window = _weights([labelled], profile)
    detected = (np.asarray(scores) >= threshold) & (window != PROBATION)
    total = float(np.sum(weight[detected & (window == OUTSIDE)]))
    for w in range(labelled.n_windows):
        hits = np.flatnonzero(detected & (window == w))
        total += float(weight[hits[0]]) if hits.size else -profile.a_fn
    return total


def normalised(total: float, n_windows: int, profile: Profile) -> float:
    """``100 (S - S_null) / (S_perfect - S_null)``: 100 is perfect, 0 detects nothing."""
    perfect = profile.a_tp * n_windows
    null = -profile.a_fn * n_windows
    return 100.0 * (total - null) / (perfect - null)


@dataclass(frozen=True)
class CorpusFile:
    """A labelled NAB data file: its rows and its scoring layout."""

    name: str
    timestamps: npt.NDArray[np.datetime64]
    values: FloatArray
    labelled: LabelledFile

    @property
    def epoch_seconds(self) -> FloatArray:
        return self.timestamps.astype("datetime64[s]").astype(np.float64)


def load_corpus(root: str | Path) -> list[CorpusFile]:
    """Read NAB's ``data/<category>/<name>.csv`` files and ``labels/combined_windows.json``."""
    import pandas as pd

    base = Path(root)
    labels_path = base / "labels" / "combined_windows.json"
    if not labels_path.is_file():
        msg = f"NAB corpus: no labels at {labels_path}"
        raise DataError(msg)
    windows = json.loads(labels_path.read_text())
    files = []
    for name in sorted(windows):
        frame = pd.read_csv(base / "data" / name)
        timestamps = pd.to_datetime(frame["timestamp"]).to_numpy(dtype="datetime64[ns]")
        rows = window_rows(timestamps, [(s, e) for s, e in windows[name]])
        files.append(
            CorpusFile(
                name,
                timestamps,
                frame["value"].to_numpy(dtype=np.float64),
                label_rows(name, len(frame), rows),
            )
        )
    return files


@dataclass(frozen=True)
class Fold:
    """One held-out group of a cross-validation and what was chosen without it.

    ``setting`` is the candidate (of those offered) and ``threshold`` the threshold that
    scored highest on the other groups; ``raw`` is the held-out files' NAB score with both.
    """

    held_out: str
    setting: str
    threshold: float
    raw: float
    n_windows: int


@dataclass(frozen=True)
class CrossValidation:
    """Held-out scores of every fold, combined as NAB combines a set of files.

    The folds' raw scores are summed and normalised once against the summed null and
    perfect scores of all held-out files (every file is held out exactly once), which is
    what NAB's normalisation does for one file set. A fold's own normalised score is
    undefined when it has no window (NAB's ``artificialNoAnomaly``: only false alarms).
    """

    profile: Profile
    folds: tuple[Fold, ...]

    @property
    def raw(self) -> float:
        return sum(f.raw for f in self.folds)

    @property
    def n_windows(self) -> int:
        return sum(f.n_windows for f in self.folds)

    @property
    def score(self) -> float:
        return normalised(self.raw, self.n_windows, self.profile)


def cross_validate(
    files: Sequence[LabelledFile],
    candidates: Mapping[str, Sequence[FloatArray]],
    profile: Profile,
    groups: Sequence[str],
) -> CrossValidation:
    """Leave-one-group-out: tune setting and threshold on the rest, score the group left out.

    Args:
        files: the labelled files.
        candidates: per setting, its scores of every file (in ``files`` order).
        profile: the NAB profile that both the tuning and the held-out score use.
        groups: per file, its group (NAB's category); each group is held out once.

    Returns:
        The folds in group order, each with the setting and threshold its training chose
        (ties: the setting offered first, then the higher threshold).
    """
    if len(groups) != len(files):
        msg = f"NAB cross-validation: {len(groups)} groups for {len(files)} files"
        raise ValueError(msg)
    folds = []
    for group in sorted(set(groups)):
        train = [i for i, g in enumerate(groups) if g != group]
        test = [i for i, g in enumerate(groups) if g == group]
        best: tuple[float, str, float] | None = None
        for setting, scores in candidates.items():
            threshold, total = sweep(
                [files[i] for i in train], [scores[i] for i in train], profile
            ).best()
            if best is None or total > best[0]:
                best = (total, setting, threshold)
        if best is None:
            msg = "NAB cross-validation: no candidate settings"
            raise ValueError(msg)
        _, setting, threshold = best
        raw = sum(file_score(files[i], candidates[setting][i], threshold, profile) for i in test)
        n_windows = sum(files[i].n_windows for i in test)
        folds.append(Fold(group, setting, threshold, raw, n_windows))
    return CrossValidation(profile, tuple(folds))
