"""Inputs a signature types float32 are read rounded to float32 by every flavor and in
training, and a tree's float32 thresholds then split them exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from sklearn.ensemble import HistGradientBoostingClassifier

from lakecast.models.flavors.sklearn_flavor import SklearnPredictor
from lakecast.models.optimize.converters import _float32_thresholds
from lakecast.models.predictor import feature_matrix
from lakecast.models.training import TrainingRows
from lakecast.registry.signature import Signature

READS_FLOAT32 = Signature.of({"a": "float32", "b": "float64"})
TWIN = np.nextafter(0.675, 1.0)  # one float64 ulp above 0.675: the same float32


def test_a_float32_input_is_rounded_and_the_callers_array_is_left_alone() -> None:
    given = np.array([[0.675, 0.675], [TWIN, TWIN]])
    matrix = feature_matrix(given, READS_FLOAT32)
    assert matrix[0, 0] == matrix[1, 0] == float(np.float32(0.675))
    assert matrix[0, 1] != matrix[1, 1]  # 'b' reads float64
    assert given[1, 0] == TWIN
    table = pa.table({"a": given[:, 0], "b": given[:, 1]})
    np.testing.assert_array_equal(feature_matrix(table, READS_FLOAT32), matrix)


def test_a_tree_that_reads_float32_scores_one_ulp_twins_alike() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2_000)
    # Trained on float64 values one ulp apart, it splits between them; read as float32
    # they are one value, as training (TrainingRows.read_as) would have seen them.
    train = np.column_stack([np.where(labels == 1, TWIN, 0.675), rng.standard_normal(2_000)])
    model = HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(train, labels)
    rows = np.array([[0.675, 0.0], [TWIN, 0.0]])
    as64 = SklearnPredictor(model, Signature.of(["a", "b"], dtype="float64"), "error")
    assert as64.predict(rows)[0] != as64.predict(rows)[1]
    as32 = SklearnPredictor(model, READS_FLOAT32, "error")
    assert as32.predict(rows)[0] == as32.predict(rows)[1]

    days = np.full(2, np.datetime64("2026-01-01"))
    read = TrainingRows(rows, np.array([0, 1]), days).read_as(READS_FLOAT32)
    assert read.features[0, 0] == read.features[1, 0] and rows[1, 0] == TWIN


def test_thresholds_rounded_down_split_every_float32_as_the_float64_threshold() -> None:
    rng = np.random.default_rng(3)
    thresholds = rng.standard_normal(20_000) * 10.0 ** rng.integers(-3, 4, 20_000)
    down = _float32_thresholds(thresholds, down=True).astype(np.float64)
    assert (down <= thresholds).all()
    # The float32 values nearest each threshold, either side of it and on it.
    near = thresholds.astype(np.float32)
    for x in (near, np.nextafter(near, np.float32(np.inf)), np.nextafter(near, np.float32(0))):
        x64 = x.astype(np.float64)
        np.testing.assert_array_equal(x64 <= down, x64 <= thresholds)
    nearest = _float32_thresholds(thresholds, down=False).astype(np.float64)
    x64 = near.astype(np.float64)
    assert ((x64 <= nearest) != (x64 <= thresholds)).any()  # why nearest is not exact


def test_the_same_artifact_read_at_another_precision_is_a_minor_version(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    from lakecast.registry import Registry

    registry = Registry(tmp_path / "registry")
    x = np.random.default_rng(1).normal(size=(50, 2))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    first = registry.register("m", model, signature=Signature.of(["a", "b"], dtype="float64"))
    again = registry.register("m", model, signature=Signature.of(["a", "b"], dtype="float32"))
    assert (first.version, again.version) == ("1.0.0", "1.1.0")
    assert first.sha256 == again.sha256  # one artifact, read two ways
