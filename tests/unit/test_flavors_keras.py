"""Keras 3 through the registry: .keras round trip, safe-mode refusal of Lambda code.

Few tests on purpose: importing TensorFlow costs seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from lakecast.errors import ModelIntegrityError, UnsafeArtifactError
from lakecast.models.flavors.keras_flavor import import_keras
from lakecast.registry import Registry, Signature

SIG = Signature.of(["a", "b", "c", "d"])


@pytest.fixture(scope="module")
def keras() -> Any:
    return import_keras()


def _dense(keras: Any) -> Any:
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    return model


def test_keras_round_trip_through_the_registry(keras: Any, tmp_path: Path) -> None:
    model = _dense(keras)
    x = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    before = np.asarray(model.predict_on_batch(x), dtype=np.float64).ravel()
    registry = Registry(tmp_path / "registry")
    version = registry.register("ctr_nn", model, signature=SIG, metrics={"auc": 0.6})
    assert version.flavor == "keras"
    assert Path(version.artifact_path).name == "model.keras"

    record, predictor = registry.load("ctr_nn")
    scores = predictor.predict(x)
    assert scores.dtype == np.float64
    np.testing.assert_allclose(scores, before, rtol=1e-6)
    assert record.sha256 == version.sha256

    Path(version.artifact_path).write_bytes(b"not a model")
    with pytest.raises(ModelIntegrityError, match=r"'ctr_nn' version 1\.0\.0"):
        registry.load("ctr_nn:1.0.0")


def test_lambda_layer_is_refused_in_safe_mode(keras: Any, tmp_path: Path) -> None:
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Lambda(lambda t: t * 2.0), keras.layers.Dense(1)]
    )
    registry = Registry(tmp_path / "registry")
    with pytest.raises(UnsafeArtifactError, match=r"safe mode.*Lambda"):
        registry.register("sneaky", model, signature=SIG)
    assert registry.versions("sneaky") == []


def test_arrow_columns_of_any_length_score_as_the_model_s_own_predict(keras: Any) -> None:
    # The predictor builds a column-major matrix and transposes inside the compiled graph;
    # the scores must be the model's, across slices and with nulls under "propagate".
    from lakecast.models.flavors.keras_flavor import KerasPredictor

    model = _dense(keras)
    rows = 70_000  # more than one slice of the forward pass
    x = np.random.default_rng(2).normal(size=(rows, 4))
    x[5, 2] = np.nan
    batch = pa.RecordBatch.from_arrays(
        [pa.array(x[:, i], mask=np.isnan(x[:, i])) for i in range(4)], names=SIG.input_names
    )
    expected = np.asarray(model.predict_on_batch(np.nan_to_num(x).astype(np.float32))).ravel()
    expected[5] = np.nan
    predictor = KerasPredictor(model, SIG, "propagate")
    for rows_scored in (rows, 3):  # a full Spark batch, a small streaming one
        scores = predictor.predict(batch.slice(0, rows_scored))
        np.testing.assert_allclose(scores, expected[:rows_scored], rtol=1e-5, atol=1e-7)
