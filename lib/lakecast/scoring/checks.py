"""Checks a scoring job makes: on the input before any task runs, on the scores it writes.

A feature column that is missing or has the wrong type would otherwise fail deep inside a task
(or worse, be silently cast), after some partitions had been scored. Checking the DataFrame's
schema against the model's signature up front stops the job with every bad column named, and
nothing is written.

A NaN or infinite score is no prediction: written as NaN it would sort, average and join like
one. The tasks write it as null (:func:`score_array`), and the run counts the nulls per model
version (:func:`nonfinite_score_counts`) into its summary and the commit's metadata, and logs
a warning; the streaming worker dead-letters such a score instead. The row stays (its key and
model columns say it was scored), so a rerun or a reader can find it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from lakecast.errors import SchemaError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import DataType, StructType

    from lakecast.registry.signature import Signature

# Spark types a signature dtype accepts as they are (widening float32 -> float64 is lossless,
# the other way round is what the Keras flavor does by design).
_ACCEPTED: dict[str, tuple[str, ...]] = {
    "float64": ("DoubleType", "FloatType"),
    "float32": ("FloatType", "DoubleType"),
    "int64": ("LongType", "IntegerType", "ShortType", "ByteType"),
    "int32": ("IntegerType", "ShortType", "ByteType"),
    "bool": ("BooleanType",),
}


def _type_name(data_type: DataType) -> str:
    return type(data_type).__name__


def check_feature_columns(
    schema: StructType,
    signature: Signature,
    where: str,
    required: Sequence[str] = (),
) -> None:
    """Refuse a schema that lacks a model input or a ``required`` column, or mistypes an input.

    Raises:
        SchemaError: naming every missing column and every mistyped one with its type.
    """
    found = {field.name: field.dataType for field in schema.fields}
    missing = [name for name in [*required, *signature.input_names] if name not in found]
    mistyped = []
    for column in signature.inputs:
        data_type = found.get(column.name)
        if data_type is None:
            continue
        if _type_name(data_type) not in _ACCEPTED.get(column.dtype, ()):
            mistyped.append(
                f"{column.name!r} is {data_type.simpleString()}, the model reads {column.dtype}"
            )
    problems = []
    if missing:
        problems.append(f"missing columns {list(dict.fromkeys(missing))}")
    if mistyped:
        problems.append("mistyped columns: " + "; ".join(mistyped))
    if problems:
        msg = f"{where}: " + "; ".join(problems) + " (nothing was scored or written)"
        raise SchemaError(msg)


def score_array(scores: np.ndarray) -> pa.Array:
    """The float64 score column, null where a score is NaN or infinite (see the module)."""
    finite = np.isfinite(scores)
    if finite.all():
        return pa.array(scores, type=pa.float64())
    return pa.array(scores, type=pa.float64(), mask=~finite)


def nonfinite_score_counts(scored: DataFrame, score_column: str, ref: str | None) -> dict[str, int]:
    """``name:version`` -> rows whose score is null (non-finite). ``ref`` names the one model
    that scored every row; None reads ``model_name`` and ``model_version`` (a rollout's rows)."""
    from pyspark.sql import functions as F

    nulls = scored.filter(F.col(score_column).isNull())
    if ref is not None:
        count = nulls.count()
        return {ref: count} if count else {}
    rows = nulls.groupBy("model_name", "model_version").count().collect()
    return {f"{row['model_name']}:{row['model_version']}": int(row["count"]) for row in rows}
