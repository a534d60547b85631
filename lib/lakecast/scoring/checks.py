"""Checks a scoring job makes on the driver before any task runs.

A feature column that is missing or has the wrong type would otherwise fail deep inside a task
(or worse, be silently cast), after some partitions had been scored. Checking the DataFrame's
schema against the model's signature up front stops the job with every bad column named, and
nothing is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lakecast.errors import SchemaError

if TYPE_CHECKING:
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
