"""Signatures: building, JSON round trip, and diffs that name every differing column."""

from __future__ import annotations

import pyarrow as pa
import pytest

from lakecast.errors import SchemaError
from lakecast.registry.signature import ColumnSpec, Signature, diff_signatures


def test_json_round_trip_keeps_order_and_types() -> None:
    sig = Signature.of({"price": "float64", "views": "int64", "is_mobile": "bool"}, output="p")
    back = Signature.from_json(sig.to_json())
    assert back == sig
    assert back.input_names == ["price", "views", "is_mobile"]


def test_from_arrow_takes_numeric_columns_in_order() -> None:
    schema = pa.schema([("a", pa.float32()), ("b", pa.int64())])
    assert Signature.from_arrow(schema).inputs == (
        ColumnSpec("a", "float32"),
        ColumnSpec("b", "int64"),
    )
    with pytest.raises(SchemaError, match="'c'"):
        Signature.from_arrow(pa.schema([("c", pa.string())]))


def test_refuses_duplicate_inputs_and_unknown_dtypes() -> None:
    with pytest.raises(SchemaError, match=r"\['a'\]"):
        Signature.of(["a", "b", "a"])
    with pytest.raises(SchemaError, match="float16"):
        Signature.of({"a": "float16"})


def test_same_signature_is_compatible() -> None:
    diff = diff_signatures(Signature.of(["a", "b"]), Signature.of(["a", "b"]))
    assert diff.is_compatible
    assert diff.describe() == "no change"


def test_diff_names_added_removed_and_retyped_columns() -> None:
    old = Signature.of({"a": "float32", "b": "float32", "c": "int64"})
    new = Signature.of({"a": "float32", "c": "float64", "d": "float32"})
    diff = diff_signatures(old, new)
    assert not diff.is_compatible
    assert [c.name for c in diff.added] == ["d"]
    assert [c.name for c in diff.removed] == ["b"]
    assert diff.changed == (("c", "int64", "float64"),)
    text = diff.describe()
    assert "added 'd' (float32)" in text
    assert "removed 'b' (float32)" in text
    assert "changed dtype 'c' int64 -> float64" in text


def test_reordering_inputs_is_breaking() -> None:
    diff = diff_signatures(Signature.of(["a", "b"]), Signature.of(["b", "a"]))
    assert diff.reordered
    assert not diff.is_compatible
    assert "reordered" in diff.describe()


def test_output_change_is_breaking() -> None:
    diff = diff_signatures(Signature.of(["a"]), Signature.of(["a"], output="p_click"))
    assert not diff.is_compatible
    assert "'score' (float64) -> 'p_click' (float64)" in diff.describe()


def test_reading_a_float_at_another_precision_is_compatible_and_named() -> None:
    old = Signature.of({"a": "float64", "b": "float64", "n": "int64"})
    diff = diff_signatures(old, Signature.of({"a": "float32", "b": "float64", "n": "int32"}))
    assert diff.precision == (("a", "float64", "float32"),)
    assert diff.changed == (("n", "int64", "int32"),)
    assert not diff.is_compatible  # the int change
    only_precision = diff_signatures(
        old, Signature.of({"a": "float32", "b": "float32", "n": "int64"})
    )
    assert only_precision.is_compatible
    assert only_precision.describe() == (
        "read at another precision 'a' float64 -> float32, 'b' float64 -> float32"
    )
