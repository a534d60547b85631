"""The Predictor protocol every flavor implements, and the one way features become a matrix.

A Predictor takes a 2-D float array (columns in signature order), a pyarrow Table or
RecordBatch, or a dict of columns, and returns one float64 score per row. Non-finite features
(NaN, +-inf) follow the model's declared NaN policy:

- ``error``: refuse the batch with a DataError naming the columns and the count of rows;
- ``impute_zero``: replace them by 0 before the model sees them;
- ``propagate``: rows with any non-finite feature score NaN, the others are scored;
- ``native``: hand them to the model as they are (HistGradientBoosting treats NaN as missing).

An input the signature types ``float32`` is read at that precision by every flavor: its value
is rounded to the nearest float32 once, here, whatever the matrix's own dtype (see
:func:`read_as_signature`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, runtime_checkable

import numpy as np
import pyarrow as pa

from lakecast.errors import DataError, SchemaError

if TYPE_CHECKING:
    from lakecast.registry.signature import Signature

NanPolicy = Literal["error", "impute_zero", "propagate", "native"]
Order = Literal["C", "F"]
NAN_POLICIES: tuple[NanPolicy, ...] = ("error", "impute_zero", "propagate", "native")

Features: TypeAlias = np.ndarray | pa.Table | pa.RecordBatch | Mapping[str, Any]


@runtime_checkable
class Predictor(Protocol):
    """A loaded model: scores rows of features."""

    @property
    def signature(self) -> Signature: ...

    @property
    def nan_policy(self) -> NanPolicy: ...

    def predict(self, features: Features) -> np.ndarray:
        """One float64 score per row of ``features``."""
        ...


def check_nan_policy(policy: str) -> NanPolicy:
    for known in NAN_POLICIES:
        if policy == known:
            return known
    msg = f"nan_policy {policy!r} is not one of {NAN_POLICIES}"
    raise SchemaError(msg)


def feature_matrix(
    features: Features, signature: Signature, dtype: Any = np.float64, order: Order = "C"
) -> np.ndarray:
    """The features as a contiguous (rows, inputs) array in signature order.

    ``order="F"`` (column-major) is one sequential copy per Arrow column; a row-major matrix
    from columns is a strided transpose, which costs several times more than a small model's
    forward pass (120 vs 20 ns a row for 49 columns here).

    Raises:
        SchemaError: a named input column is missing, or an array has the wrong width.
    """
    names = signature.input_names
    if isinstance(features, np.ndarray):
        matrix = features
        if matrix.ndim != 2 or matrix.shape[1] != len(names):
            msg = (
                f"features: array of shape {matrix.shape} does not match the signature's "
                f"{len(names)} input columns {names}"
            )
            raise SchemaError(msg)
        out = np.asarray(matrix, dtype=dtype, order=order)
        return read_as_signature(out, signature, copy=np.may_share_memory(out, matrix))
    if isinstance(features, pa.Table | pa.RecordBatch):
        available = set(features.schema.names)
        columns: list[Any] = []
        missing = [n for n in names if n not in available]
        if not missing:
            columns = [features.column(n).to_numpy(zero_copy_only=False) for n in names]
    elif isinstance(features, Mapping):
        missing = [n for n in names if n not in features]
        if not missing:
            columns = [np.asarray(features[n]) for n in names]
    else:
        msg = f"features: {type(features).__name__} is not an array, Arrow table or dict"
        raise SchemaError(msg)
    if missing:
        msg = f"features: missing input columns {missing} of the signature {names}"
        raise SchemaError(msg)
    if not columns:
        return np.empty((0, len(names)), dtype=dtype, order=order)
    try:
        # None (Arrow nulls) becomes NaN so the NaN policy decides what happens to it.
        stacked = [np.asarray(c, dtype=np.float64).reshape(-1) for c in columns]
    except (TypeError, ValueError) as exc:
        msg = f"features: an input column of {names} is not numeric: {exc}"
        raise SchemaError(msg) from exc
    lengths = {len(c) for c in stacked}
    if len(lengths) > 1:
        msg = f"features: input columns have different lengths {sorted(lengths)}"
        raise SchemaError(msg)
    matrix = np.empty((len(stacked[0]), len(stacked)), dtype=dtype, order=order)
    for i, column in enumerate(stacked):
        matrix[:, i] = column
    return read_as_signature(matrix, signature, copy=False)


def read_as_signature(matrix: np.ndarray, signature: Signature, *, copy: bool) -> np.ndarray:
    """``matrix`` with each input the signature types ``float32`` rounded to the nearest
    float32 (a float32 matrix is so already); a copy where ``copy``.

    A model that reads float32 is trained and served on the same rounded values, whatever
    flavor or runtime scores it: a tree's float32 form (``onnx-fp32``) then splits exactly as
    the source does, and two float64 values one ulp apart (a feature computed two ways, online
    and offline) are one input.
    """
    narrow = [i for i, column in enumerate(signature.inputs) if column.dtype == "float32"]
    if not narrow or matrix.dtype != np.float64:
        return matrix
    out = matrix.copy(order="K") if copy else matrix
    if len(narrow) == out.shape[1]:
        out[...] = out.astype(np.float32)
    else:
        out[:, narrow] = out[:, narrow].astype(np.float32)
    return out


def apply_nan_policy(
    matrix: np.ndarray, signature: Signature, policy: NanPolicy
) -> tuple[np.ndarray, np.ndarray | None]:
    """The matrix to score and, under ``propagate``, the mask of rows that must score NaN."""
    finite = np.isfinite(matrix)
    if finite.all() or policy == "native":
        return matrix, None
    if policy == "error":
        bad_columns = [signature.input_names[i] for i in np.flatnonzero(~finite.all(axis=0))]
        bad_rows = int((~finite.all(axis=1)).sum())
        msg = (
            f"features: {bad_rows} row(s) have NaN or infinite values in {bad_columns}; "
            "the model's nan_policy is 'error'"
        )
        raise DataError(msg)
    if policy == "impute_zero":
        return np.where(finite, matrix, 0).astype(matrix.dtype, copy=False), None
    bad = ~finite.all(axis=1)
    return np.where(finite, matrix, 0).astype(matrix.dtype, copy=False), bad


def finish_scores(scores: np.ndarray, rows: int, nan_rows: np.ndarray | None) -> np.ndarray:
    """Scores as a 1-D float64 array of ``rows`` entries, NaN where the policy asks."""
    out = np.asarray(scores, dtype=np.float64).reshape(-1)
    if out.shape[0] != rows:
        msg = f"model returned {out.shape[0]} scores for {rows} rows"
        raise SchemaError(msg)
    if nan_rows is not None:
        out = out.copy()
        out[nan_rows] = np.nan
    return out


class MatrixPredictor:
    """What every flavor's predictor shares: the signature, the NaN policy, one score per row.

    A flavor only says how a clean matrix (``dtype``, NaN policy applied) becomes raw scores.
    """

    dtype: Any = np.float64
    order: Order = "C"  # the memory layout raw_scores wants; "F" saves the transpose

    def __init__(self, model: Any, signature: Signature, nan_policy: NanPolicy) -> None:
        self.model = model
        self._signature = signature
        self._nan_policy = nan_policy

    @property
    def signature(self) -> Signature:
        return self._signature

    @property
    def nan_policy(self) -> NanPolicy:
        return self._nan_policy

    def predict(self, features: Features) -> np.ndarray:
        matrix = feature_matrix(features, self._signature, self.dtype, self.order)
        rows = matrix.shape[0]
        if rows == 0:
            return np.empty(0, dtype=np.float64)
        matrix, nan_rows = apply_nan_policy(matrix, self._signature, self._nan_policy)
        return finish_scores(self.raw_scores(matrix), rows, nan_rows)

    def raw_scores(self, matrix: np.ndarray) -> np.ndarray:
        raise NotImplementedError
