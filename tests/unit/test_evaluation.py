"""Holdout metrics and the time-based split, on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from lakecast.errors import DataError, SchemaError
from lakecast.models.evaluation import evaluate, expected_calibration_error
from lakecast.models.training import time_holdout_split, training_rows


def test_calibration_error_is_zero_when_calibrated_and_large_when_overconfident() -> None:
    labels = np.array([0, 0, 0, 1] * 25, dtype=float)
    assert expected_calibration_error(labels, np.full(100, 0.25)) == pytest.approx(0.0)
    assert expected_calibration_error(labels, np.full(100, 0.95)) == pytest.approx(0.70)


def test_evaluate_ranks_and_refuses_a_single_class_or_bad_scores() -> None:
    labels = np.array([0, 0, 1, 1])
    metrics = evaluate(labels, np.array([0.1, 0.4, 0.35, 0.8]))
    assert metrics.roc_auc == pytest.approx(0.75)
    assert metrics.as_dict()["holdout_rows"] == 4.0
    with pytest.raises(DataError, match="need both 0 and 1"):
        evaluate(np.zeros(3), np.full(3, 0.5))
    with pytest.raises(DataError, match="finite probabilities"):
        evaluate(labels, np.array([0.1, np.nan, 0.2, 0.3]))


def _table(days: list[str], labels: list[int]) -> pa.Table:
    n = len(days)
    return pa.table(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "ts": pa.array(np.array(days, dtype="datetime64[D]").astype("datetime64[us]")),
            "date": pa.array(np.array(days, dtype="datetime64[D]"), type=pa.date32()),
            "a": [float(i) for i in range(n)],
            "label": pa.array(labels, type=pa.int32()),
        }
    )


def test_holdout_takes_the_last_dates_in_time_order() -> None:
    days = ["2026-01-03", "2026-01-01", "2026-01-02", "2026-01-03", "2026-01-01", "2026-01-02"]
    rows = training_rows(_table(days, [1, 0, 1, 0, 1, 0]), ["a"], "label")
    split = time_holdout_split(rows, 1)
    assert split.holdout_from.isoformat() == "2026-01-03"
    assert split.train.rows == 4
    assert split.holdout.rows == 2
    assert split.train.dates.max() < split.holdout.dates.min()
    with pytest.raises(DataError, match="leaves nothing to train on"):
        time_holdout_split(rows, 3)


def test_training_rows_name_missing_columns_and_null_labels() -> None:
    table = _table(["2026-01-01", "2026-01-02"], [0, 1])
    with pytest.raises(SchemaError, match="'b'"):
        training_rows(table, ["a", "b"], "label")
    nulls = table.set_column(4, "label", pa.array([None, 1], type=pa.int32()))
    with pytest.raises(DataError, match="null"):
        training_rows(nulls, ["a"], "label")
