"""The spec's declared invariants: every feature has one, real feature values keep them, and a
violation names the feature, the rule, the count and the value."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from lakecast.errors import DataError
from lakecast.features.invariants import InvariantCheck, check_feature_table
from lakecast.features.spec import FEATURE_COLUMNS, FEATURE_INVARIANTS, AllowedValues
from lakecast.testing.features import training_matrix

pytestmark = pytest.mark.unit


def test_every_feature_declares_a_range_or_values() -> None:
    assert list(FEATURE_INVARIANTS) == list(FEATURE_COLUMNS)
    assert FEATURE_INVARIANTS["device_unknown"] == AllowedValues((0.0, 1.0))


def test_the_workers_own_feature_values_keep_the_invariants_but_one() -> None:
    # lakecast.testing's snapshot draws each user's per-category 7-day counts independently of
    # the user's 7-day event count, so a share above 1 happens there (never in a snapshot the
    # Spark job computes): the check finds exactly that, and nothing in the other 48 features.
    matrix = training_matrix(300)
    found = InvariantCheck().violations(matrix)
    assert [v.feature for v in found] == ["user_category_share_7d"]
    assert found[0].example > 1.0


def test_violations_name_feature_rule_count_and_first_value() -> None:
    matrix = training_matrix(50)
    share = FEATURE_COLUMNS.index("user_category_share_7d")
    flag = FEATURE_COLUMNS.index("event_view")
    matrix[:, share] = 0.5  # the test snapshot's own breaks aside (see above)
    matrix[7, share] = 1.5
    matrix[9, share] = -0.1
    matrix[3, flag] = 0.5
    matrix[4, flag] = np.nan
    found = {v.feature: v for v in InvariantCheck().violations(matrix)}
    assert set(found) == {"user_category_share_7d", "event_view"}
    assert (found["user_category_share_7d"].count, found["user_category_share_7d"].row) == (2, 7)
    assert found["user_category_share_7d"].example == 1.5
    assert found["event_view"].count == 2
    assert "one of {0, 1}" in found["event_view"].message()
    assert "in [0, 1]" in found["user_category_share_7d"].message()


def test_a_training_table_that_breaks_an_invariant_is_refused() -> None:
    matrix = training_matrix(20)
    matrix[:, FEATURE_COLUMNS.index("user_category_share_7d")] = 0.25
    matrix[5, FEATURE_COLUMNS.index("user_recency_s")] = -3.0
    table = pa.table({name: matrix[:, i] for i, name in enumerate(FEATURE_COLUMNS)})
    with pytest.raises(DataError, match=r"train set: 1 feature.*'user_recency_s'.*-3\.0 at row 5"):
        check_feature_table(table, "train set")
    check_feature_table(table.slice(0, 5), "train set")  # the rows before it pass
