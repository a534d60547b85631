"""Score a DataFrame of feature rows with ``mapInArrow``: Arrow in, numpy in between, Arrow out.

No per-row Python: each Arrow record batch becomes one contiguous (rows, inputs) matrix (one
``np.column_stack``), the model predicts on slices of ``batch_size`` rows, and the scores go
back as one Arrow column beside the key columns. Rows with NaN or infinite features are counted
(an accumulator) and then treated as the model's NaN policy says: refused (the task fails with
the columns named), imputed, scored NaN, or handed to the model as they are.

The per-batch scoring does not care where the batches come from: a :class:`BatchScoring`
(a run's plan, :class:`lakecast.scoring.plan.PlanScoring`: one model, or a rollout's variants)
turns each Arrow batch into its scored rows, whether Spark read the table and shipped the
batches (:func:`on_frame`) or the Python workers read the table's files themselves
(:mod:`lakecast.scoring.direct`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa

from lakecast.errors import ScoringError
from lakecast.scoring.cache import ModelPayload, predictor_for
from lakecast.scoring.checks import score_array

if TYPE_CHECKING:
    from pyspark import Accumulator
    from pyspark.broadcast import Broadcast
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType

    from lakecast.models.predictor import Order, Predictor

SCORE_COLUMN = "score"
DEFAULT_BATCH_SIZE = 8192

ArrowMapper = Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]
BatchScorer = Callable[[pa.RecordBatch], pa.RecordBatch]


@dataclass
class ScoringCounters:
    """Driver-side accumulators the tasks add to: rows scored, rows with non-finite features.

    Read them after an action has run; a retried task may count its rows twice.
    """

    rows: Accumulator[int]
    nonfinite_rows: Accumulator[int]


def matrix_of(
    batch: pa.RecordBatch, columns: Sequence[str], dtype: Any, order: Order = "C"
) -> np.ndarray:
    """The named columns of ``batch`` as one contiguous (rows, len(columns)) matrix, in the
    memory ``order`` the predictor wants (see :class:`~lakecast.models.predictor.MatrixPredictor`).

    Nulls become NaN, so the NaN policy decides about them as about any missing value. Each
    column is converted straight into the matrix's dtype (float64 -> float32 rounds as numpy's
    ``astype`` does), without an intermediate float64 matrix.
    """
    matrix = np.empty((batch.num_rows, len(columns)), dtype=dtype, order=order)
    for index, name in enumerate(columns):
        matrix[:, index] = batch.column(name).to_numpy(zero_copy_only=False)
    return matrix


def matrix_order(predictor: Predictor) -> Order:
    """The memory layout ``predictor`` scores without a copy (row-major unless it says)."""
    order: Order = getattr(predictor, "order", "C")
    return order


def predict_in_slices(predictor: Predictor, matrix: np.ndarray, batch_size: int) -> np.ndarray:
    """The float64 scores of ``matrix``'s rows, predicted ``batch_size`` rows at a time."""
    rows = matrix.shape[0]
    scores = np.empty(rows, dtype=np.float64)
    for start in range(0, rows, batch_size):
        scores[start : start + batch_size] = predictor.predict(matrix[start : start + batch_size])
    return scores


def nonfinite_rows(matrix: np.ndarray) -> int:
    """How many rows of ``matrix`` hold a NaN or an infinite value."""
    if not matrix.shape[0]:
        return 0
    return int(matrix.shape[0] - np.isfinite(matrix).all(axis=1).sum())


def check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        msg = f"score: batch_size must be >= 1, got {batch_size}"
        raise ScoringError(msg)


def model_scorer(
    model: ModelPayload,
    out_columns: Sequence[str],
    batch_size: int,
    counters: ScoringCounters | None,
) -> BatchScorer:
    """In a Python worker: a function scoring one Arrow batch with ``model`` (loaded, cached).

    The batch must hold ``out_columns`` and the model's inputs; the result holds
    ``out_columns`` (as they came) and ``score``.
    """
    passed = list(out_columns)
    predictor = predictor_for(model)
    inputs = predictor.signature.input_names
    # The matrix the model computes in, built once from the columns: no conversion copy.
    dtype, order = model.feature_dtype, matrix_order(predictor)

    def score(batch: pa.RecordBatch) -> pa.RecordBatch:
        matrix = matrix_of(batch, inputs, dtype, order)
        scores = predict_in_slices(predictor, matrix, batch_size)
        if counters is not None:
            counters.rows.add(matrix.shape[0])
            bad = nonfinite_rows(matrix)
            if bad:
                counters.nonfinite_rows.add(bad)
        columns = [batch.column(name) for name in passed]
        return pa.RecordBatch.from_arrays(
            [*columns, score_array(scores)], names=[*passed, SCORE_COLUMN]
        )

    return score


def score_mapper(
    payload: Broadcast[ModelPayload],
    out_columns: Sequence[str],
    batch_size: int,
    counters: ScoringCounters | None,
) -> ArrowMapper:
    """The function ``mapInArrow`` runs in each Python worker (see the module docstring)."""
    check_batch_size(batch_size)
    passed = list(out_columns)

    def apply(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        score = model_scorer(payload.value, passed, batch_size, counters)
        for batch in batches:
            yield score(batch)

    return apply


class BatchScoring(Protocol):
    """How Arrow batches are scored, whatever reads them: picklable, shipped to every task.

    A source hands :meth:`scorer`'s function batches that hold ``passed_columns`` (with the
    types of the table's schema) and ``feature_columns`` (any numeric type; float32 is enough
    where ``float32_features``), at most ``batch_size`` rows each. The results have
    :meth:`output_schema`.
    """

    @property
    def passed_columns(self) -> tuple[str, ...]: ...

    @property
    def feature_columns(self) -> tuple[str, ...]: ...

    @property
    def float32_features(self) -> bool: ...

    @property
    def batch_size(self) -> int: ...

    def output_schema(self, source: StructType) -> StructType:
        """The scored rows' schema, given the schema of the rows read (``source``)."""
        ...

    def scorer(self) -> BatchScorer:
        """In a Python worker: load the models (cached per worker) and return the scorer."""
        ...


def scoring_mapper(scoring: BatchScoring) -> ArrowMapper:
    """``mapInArrow``'s function: every batch Spark ships through ``scoring``'s scorer."""

    def apply(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        score = scoring.scorer()
        for batch in batches:
            yield score(batch)

    return apply


def on_frame(frame: DataFrame, scoring: BatchScoring) -> DataFrame:
    """``frame`` scored by ``scoring``, Spark reading it and shipping the batches to Python.

    Only the passed columns and the features cross into Python. Nothing runs until an action.
    """
    from pyspark.sql import functions as F

    passed = scoring.passed_columns
    # A float32 model (Keras, an ONNX graph with a float input): casting in the JVM halves the
    # bytes shipped to Python and rounds exactly as numpy's astype would (IEEE
    # round-to-nearest), so scores are unchanged.
    as_float = scoring.float32_features
    selected = frame.select(
        *passed,
        *(F.col(c).cast("float").alias(c) if as_float else F.col(c)
          for c in scoring.feature_columns),
    )  # fmt: skip
    return selected.mapInArrow(scoring_mapper(scoring), scoring.output_schema(selected.schema))


def new_counters(frame: DataFrame) -> ScoringCounters:
    """Fresh accumulators on ``frame``'s SparkContext."""
    context = frame.sparkSession.sparkContext
    return ScoringCounters(context.accumulator(0), context.accumulator(0))
