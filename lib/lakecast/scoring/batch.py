"""Score a DataFrame of feature rows with ``mapInArrow``: Arrow in, numpy in between, Arrow out.

No per-row Python: each Arrow record batch becomes one contiguous (rows, inputs) matrix (one
``np.column_stack``), the model predicts on slices of ``batch_size`` rows, and the scores go
back as one Arrow column beside the key columns. Rows with NaN or infinite features are counted
(an accumulator) and then treated as the model's NaN policy says: refused (the task fails with
the columns named), imputed, scored NaN, or handed to the model as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from lakecast.errors import ScoringError
from lakecast.scoring.cache import ModelPayload, predictor_for

if TYPE_CHECKING:
    from pyspark import Accumulator
    from pyspark.broadcast import Broadcast
    from pyspark.sql import DataFrame

    from lakecast.models.predictor import Predictor

SCORE_COLUMN = "score"
DEFAULT_BATCH_SIZE = 8192

ArrowMapper = Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]


@dataclass
class ScoringCounters:
    """Driver-side accumulators the tasks add to: rows scored, rows with non-finite features.

    Read them after an action has run; a retried task may count its rows twice.
    """

    rows: Accumulator[int]
    nonfinite_rows: Accumulator[int]


def matrix_of(batch: pa.RecordBatch, columns: Sequence[str], dtype: Any) -> np.ndarray:
    """The named columns of ``batch`` as one C-contiguous (rows, len(columns)) matrix.

    Nulls become NaN, so the NaN policy decides about them as about any missing value.
    """
    arrays = [batch.column(name).to_numpy(zero_copy_only=False) for name in columns]
    if batch.num_rows == 0:
        return np.empty((0, len(columns)), dtype=dtype)
    return np.ascontiguousarray(np.column_stack(arrays), dtype=dtype)


def predict_in_slices(predictor: Predictor, matrix: np.ndarray, batch_size: int) -> np.ndarray:
    """The float64 scores of ``matrix``'s rows, predicted ``batch_size`` rows at a time."""
    rows = matrix.shape[0]
    scores = np.empty(rows, dtype=np.float64)
    for start in range(0, rows, batch_size):
        scores[start : start + batch_size] = predictor.predict(matrix[start : start + batch_size])
    return scores


def score_mapper(
    payload: Broadcast[ModelPayload],
    out_columns: Sequence[str],
    batch_size: int,
    counters: ScoringCounters | None,
) -> ArrowMapper:
    """The function ``mapInArrow`` runs in each Python worker (see the module docstring)."""
    if batch_size < 1:
        msg = f"score: batch_size must be >= 1, got {batch_size}"
        raise ScoringError(msg)
    passed = list(out_columns)

    def apply(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        model = payload.value
        predictor = predictor_for(model)
        inputs = predictor.signature.input_names
        # Keras runs in float32 anyway: build that matrix directly instead of converting twice.
        dtype = np.float32 if model.flavor == "keras" else np.float64
        for batch in batches:
            matrix = matrix_of(batch, inputs, dtype)
            rows = matrix.shape[0]
            scores = predict_in_slices(predictor, matrix, batch_size)
            if counters is not None:
                counters.rows.add(rows)
                bad = int(rows - np.isfinite(matrix).all(axis=1).sum()) if rows else 0
                if bad:
                    counters.nonfinite_rows.add(bad)
            columns = [batch.column(name) for name in passed]
            yield pa.RecordBatch.from_arrays(
                [*columns, pa.array(scores, type=pa.float64())], names=[*passed, SCORE_COLUMN]
            )

    return apply


def new_counters(frame: DataFrame) -> ScoringCounters:
    context = frame.sparkSession.sparkContext
    return ScoringCounters(context.accumulator(0), context.accumulator(0))


def score_frame(
    frame: DataFrame,
    payload: ModelPayload,
    *,
    out_columns: Sequence[str] = ("event_id",),
    batch_size: int = DEFAULT_BATCH_SIZE,
    counters: ScoringCounters | None = None,
) -> DataFrame:
    """``frame``'s ``out_columns`` plus ``score`` (float64), scored by ``payload``'s model.

    Only ``out_columns`` and the model's inputs cross into Python. The model is broadcast once
    and loaded once per Python worker. Nothing runs until an action.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, StructField, StructType

    inputs = payload.signature.input_names
    # Keras computes in float32: casting in the JVM halves the bytes shipped to Python and
    # rounds exactly as numpy's astype would (IEEE round-to-nearest), so scores are unchanged.
    as_float = payload.flavor == "keras"
    selected = frame.select(
        *out_columns,
        *(F.col(c).cast("float").alias(c) if as_float else F.col(c) for c in inputs
          if c not in out_columns),
    )  # fmt: skip
    by_name = {f.name: f for f in selected.schema.fields}
    schema = StructType(
        [by_name[name] for name in out_columns] + [StructField(SCORE_COLUMN, DoubleType(), True)]
    )
    shared = frame.sparkSession.sparkContext.broadcast(payload)
    return selected.mapInArrow(score_mapper(shared, out_columns, batch_size, counters), schema)
