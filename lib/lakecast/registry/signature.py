"""A model's input/output signature and the diff that decides whether a change is breaking.

Inputs are ordered: a Predictor fed a 2-D array reads the columns by position, so moving a
column is as breaking as removing it. Any difference in inputs or output needs a major bump,
except the precision a float input is read at (float32 <-> float64): callers feed the same
columns either way, and the model rounds what it reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa

from lakecast.errors import SchemaError

DTYPES = ("float32", "float64", "int32", "int64", "bool")
FLOAT_DTYPES = frozenset({"float32", "float64"})

_ARROW_DTYPES = {
    pa.float32(): "float32",
    pa.float64(): "float64",
    pa.int32(): "int32",
    pa.int64(): "int64",
    pa.bool_(): "bool",
}


@dataclass(frozen=True)
class ColumnSpec:
    """One named, typed column."""

    name: str
    dtype: str

    def __post_init__(self) -> None:
        if not self.name:
            msg = "signature column: the name is empty"
            raise SchemaError(msg)
        if self.dtype not in DTYPES:
            msg = f"signature column {self.name!r}: dtype {self.dtype!r} is not one of {DTYPES}"
            raise SchemaError(msg)


@dataclass(frozen=True)
class Signature:
    """What a model reads (ordered input columns) and what it writes (one score column)."""

    inputs: tuple[ColumnSpec, ...]
    output: ColumnSpec = ColumnSpec("score", "float64")

    def __post_init__(self) -> None:
        if not self.inputs:
            msg = "signature: a model needs at least one input column"
            raise SchemaError(msg)
        names = [column.name for column in self.inputs]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            msg = f"signature: input columns {duplicates} appear more than once"
            raise SchemaError(msg)

    @classmethod
    def of(
        cls,
        inputs: Mapping[str, str] | Iterable[str],
        output: str = "score",
        output_dtype: str = "float64",
        dtype: str = "float32",
    ) -> Signature:
        """Build from ``{"col": "float32", ...}`` or a list of names (all of ``dtype``)."""
        pairs = inputs.items() if isinstance(inputs, Mapping) else ((n, dtype) for n in inputs)
        return cls(tuple(ColumnSpec(n, d) for n, d in pairs), ColumnSpec(output, output_dtype))

    @classmethod
    def from_arrow(cls, schema: pa.Schema, output: str = "score") -> Signature:
        """The signature of a feature table's numeric columns, in the table's order."""
        columns = []
        for arrow_field in schema:
            dtype = _ARROW_DTYPES.get(arrow_field.type)
            if dtype is None:
                msg = f"signature: column {arrow_field.name!r} has type {arrow_field.type}, "
                msg += f"a model input must be one of {DTYPES}"
                raise SchemaError(msg)
            columns.append(ColumnSpec(arrow_field.name, dtype))
        return cls(tuple(columns), ColumnSpec(output, "float64"))

    @property
    def input_names(self) -> list[str]:
        return [column.name for column in self.inputs]

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [{"name": c.name, "dtype": c.dtype} for c in self.inputs],
            "output": {"name": self.output.name, "dtype": self.output.dtype},
        }

    def to_json(self) -> str:
        return orjson.dumps(self.to_dict()).decode()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        inputs = tuple(ColumnSpec(c["name"], c["dtype"]) for c in data["inputs"])
        output = ColumnSpec(data["output"]["name"], data["output"]["dtype"])
        return cls(inputs, output)

    @classmethod
    def from_json(cls, text: str) -> Signature:
        return cls.from_dict(orjson.loads(text))


@dataclass(frozen=True)
class SignatureDiff:
    """What changed between two signatures, column by column."""

    added: tuple[ColumnSpec, ...] = ()
    removed: tuple[ColumnSpec, ...] = ()
    changed: tuple[tuple[str, str, str], ...] = ()  # (name, old dtype, new dtype)
    precision: tuple[tuple[str, str, str], ...] = ()  # float inputs read at another precision
    reordered: bool = False
    output_changed: tuple[ColumnSpec, ColumnSpec] | None = None

    @property
    def is_compatible(self) -> bool:
        return not (
            self.added or self.removed or self.changed or self.reordered or self.output_changed
        )

    def describe(self) -> str:
        """One line naming every differing column, e.g. ``added ['x' float32]; removed [...]``."""
        parts = []
        if self.added:
            parts.append("added " + ", ".join(f"{c.name!r} ({c.dtype})" for c in self.added))
        if self.removed:
            parts.append("removed " + ", ".join(f"{c.name!r} ({c.dtype})" for c in self.removed))
        if self.changed:
            parts.append(
                "changed dtype "
                + ", ".join(f"{name!r} {old} -> {new}" for name, old, new in self.changed)
            )
        if self.precision:
            parts.append(
                "read at another precision "
                + ", ".join(f"{name!r} {old} -> {new}" for name, old, new in self.precision)
            )
        if self.reordered:
            parts.append("input columns reordered")
        if self.output_changed:
            old, new = self.output_changed
            parts.append(f"output {old.name!r} ({old.dtype}) -> {new.name!r} ({new.dtype})")
        return "; ".join(parts) if parts else "no change"


def diff_signatures(old: Signature, new: Signature) -> SignatureDiff:
    """Compare two signatures; the result says what was added, removed or retyped."""
    old_by_name = {c.name: c for c in old.inputs}
    new_by_name = {c.name: c for c in new.inputs}
    added = tuple(c for c in new.inputs if c.name not in old_by_name)
    removed = tuple(c for c in old.inputs if c.name not in new_by_name)
    retyped = [
        (c.name, old_by_name[c.name].dtype, c.dtype)
        for c in new.inputs
        if c.name in old_by_name and old_by_name[c.name].dtype != c.dtype
    ]
    precision = tuple(t for t in retyped if {t[1], t[2]} <= FLOAT_DTYPES)
    changed = tuple(t for t in retyped if t not in precision)
    common_old = [c.name for c in old.inputs if c.name in new_by_name]
    common_new = [c.name for c in new.inputs if c.name in old_by_name]
    output_changed = (old.output, new.output) if old.output != new.output else None
    return SignatureDiff(
        added=added,
        removed=removed,
        changed=changed,
        precision=precision,
        reordered=common_old != common_new,
        output_changed=output_changed,
    )
