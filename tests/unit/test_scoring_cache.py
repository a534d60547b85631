"""The per-worker model cache, the schema check and the Arrow mapper, without Spark."""

from __future__ import annotations

import hashlib
import io
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest

from lakecast.errors import ModelIntegrityError, SchemaError
from lakecast.registry.signature import Signature
from lakecast.scoring import cache
from lakecast.scoring.batch import SCORE_COLUMN, matrix_of, score_mapper
from lakecast.scoring.cache import ModelPayload, predictor_for
from lakecast.scoring.checks import check_feature_columns

SIGNATURE = Signature.of({"a": "float64", "b": "float64"})


@pytest.fixture
def payload() -> ModelPayload:
    import skops.io
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 2))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    buffer = io.BytesIO()
    skops.io.dump(model, buffer)
    data = buffer.getvalue()
    cache.clear()
    return ModelPayload(
        name="m", version="1.0.0", sha256=hashlib.sha256(data).hexdigest(), flavor="sklearn",
        signature_json=SIGNATURE.to_json(), nan_policy="propagate", artifact=data,
    )  # fmt: skip


def test_a_model_is_loaded_once_per_process_and_keyed_by_sha256(payload: ModelPayload) -> None:
    first = predictor_for(payload)
    assert predictor_for(payload) is first
    assert cache.cached_models() == [payload.sha256]
    # The same artifact under another NaN policy is another Predictor over the same bytes.
    other = predictor_for(replace(payload, nan_policy="impute_zero"))
    assert other is not first
    assert other.nan_policy == "impute_zero"


def test_a_payload_whose_bytes_do_not_match_its_sha256_is_refused(payload: ModelPayload) -> None:
    tampered = replace(payload, artifact=payload.artifact + b"\0")
    with pytest.raises(ModelIntegrityError, match="broadcast artifact has sha256"):
        predictor_for(tampered)


def test_the_mapper_scores_batches_like_predict_and_counts_nonfinite_rows(
    payload: ModelPayload,
) -> None:
    class Counter:
        def __init__(self) -> None:
            self.value = 0

        def add(self, amount: int) -> None:
            self.value += amount

    counters = SimpleNamespace(rows=Counter(), nonfinite_rows=Counter())
    a = np.array([0.5, -1.0, np.nan, 2.0, np.inf])
    b = np.array([1.0, 0.0, 0.0, -3.0, 1.0])
    batch = pa.record_batch({"id": ["r1", "r2", "r3", "r4", "r5"], "b": b, "a": a})
    mapper = score_mapper(SimpleNamespace(value=payload), ["id"], 2, counters)  # type: ignore[arg-type]
    (out,) = list(mapper(iter([batch])))
    assert out.schema.names == ["id", SCORE_COLUMN]
    expected = predictor_for(payload).predict(np.column_stack([a, b]))
    scores = out.column(SCORE_COLUMN)
    # A non-finite score is written as null (not NaN): the rows with NaN / inf features here.
    assert scores.is_null().to_pylist() == [False, False, True, False, True]
    assert np.isnan(expected[[2, 4]]).all()
    np.testing.assert_allclose(scores.to_numpy(zero_copy_only=False), expected, rtol=0, atol=0)
    assert (counters.rows.value, counters.nonfinite_rows.value) == (5, 2)
    assert matrix_of(batch, ["a", "b"], np.float64).flags["C_CONTIGUOUS"]


def test_missing_and_mistyped_columns_are_all_named() -> None:
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    schema = StructType([StructField("a", StringType()), StructField("id", StringType())])
    with pytest.raises(SchemaError) as caught:
        check_feature_columns(schema, SIGNATURE, "score m", required=["id", "ts"])
    message = str(caught.value)
    assert "missing columns ['ts', 'b']" in message
    assert "'a' is string, the model reads float64" in message
    fine = StructType([StructField("a", DoubleType()), StructField("b", DoubleType())])
    check_feature_columns(fine, SIGNATURE, "score m")
