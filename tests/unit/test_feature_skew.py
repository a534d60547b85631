"""Skew between served and batch feature values: beyond the tolerance, by name; within it, not."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from lakecast.errors import SchemaError
from lakecast.features.spec import FEATURE_COLUMNS
from lakecast.monitoring.drift.skew import feature_skew
from lakecast.testing.features import training_matrix

pytestmark = pytest.mark.unit


def _table(ids: list[str], matrix: np.ndarray) -> pa.Table:
    return pa.table(
        {"event_id": ids, **{name: matrix[:, i] for i, name in enumerate(FEATURE_COLUMNS)}}
    )


def test_differences_beyond_the_tolerance_are_named_and_the_rest_pass() -> None:
    online = training_matrix(8)
    offline = online.copy()
    price, recency = FEATURE_COLUMNS.index("log_price"), FEATURE_COLUMNS.index("user_recency_s")
    offline[1, price] += 5e-7  # within 1e-6: rounding, not skew
    offline[3, recency] += 3_600.0  # the snapshot was an hour older than the event's own window
    offline[4, price] = np.nan
    ids = [f"e-{i}" for i in range(8)]
    served = _table([*ids, "e-0", "e-late"], np.vstack([online, online[:1], online[:1]]))
    report = feature_skew(served, _table(ids, offline), tolerance=1e-6)
    assert (report.compared, report.unmatched) == (8, 1)  # e-0 twice is one event
    assert report.by_feature == {"log_price": 1, "user_recency_s": 1}
    rows = {(r["event_id"], r["feature"]): r for r in report.differences.to_pylist()}
    assert set(rows) == {("e-4", "log_price"), ("e-3", "user_recency_s")}
    assert rows[("e-3", "user_recency_s")]["difference"] == pytest.approx(-3_600.0)
    assert rows[("e-3", "user_recency_s")]["online"] == online[3, recency]
    summary = report.summary()
    assert summary["differences"] == 2 and len(summary["examples"]) == 2  # type: ignore[arg-type]


def test_a_side_without_a_feature_column_is_refused_by_name() -> None:
    served = _table(["e-1"], training_matrix(1))
    with pytest.raises(SchemaError, match=r"batch features lack columns \['log_price'"):
        feature_skew(served, served.drop_columns(["log_price"]), tolerance=1e-6)
