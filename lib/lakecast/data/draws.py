"""Seeded random draws as Spark column expressions: hash, don't sample.

Every draw is ``xxhash64(salt, seed, key...)`` turned into a uniform in [0, 1), so a value
depends only on the seed and the row's keys: any partitioning, any executor, any rerun gives
the same bytes, and no Python runs per row. Each draw gets its own salt so that draws are
independent of one another.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import Column

_UNIT = float(2**53)


def uniform(salt: str, *keys: Column) -> Column:
    """A uniform draw in [0, 1) from the top 53 bits of ``xxhash64(salt, *keys)``."""
    from pyspark.sql import functions as F

    bits = F.shiftrightunsigned(F.xxhash64(F.lit(salt), *keys), 11)
    return bits.cast("double") / F.lit(_UNIT)


def normal(salt: str, *keys: Column) -> Column:
    """A standard normal draw (Box-Muller over two independent uniforms)."""
    from pyspark.sql import functions as F

    radius = F.sqrt(F.lit(-2.0) * F.log(F.lit(1.0) - uniform(f"{salt}.r", *keys)))
    return radius * F.cos(F.lit(2.0 * 3.141592653589793) * uniform(f"{salt}.a", *keys))


def hex_id(value: Column, width: int) -> Column:
    """Lower-case hex of a long, left-padded with zeros to ``width`` digits."""
    from pyspark.sql import functions as F

    return F.lpad(F.lower(F.hex(value)), width, "0")


def pick(draw: Column, values: Sequence[Any], edges: Sequence[float]) -> Column:
    """The value whose slice of [0, 1) holds ``draw``; ``edges`` are the slices' upper edges."""
    from pyspark.sql import functions as F

    if len(values) != len(edges) or not values:
        msg = f"pick: {len(values)} values but {len(edges)} edges"
        raise ValueError(msg)
    chosen = F.when(draw < F.lit(edges[0]), F.lit(values[0]))
    for value, edge in zip(values[1:-1], edges[1:-1], strict=True):
        chosen = chosen.when(draw < F.lit(edge), F.lit(value))
    return chosen.otherwise(F.lit(values[-1]))


def bucket(value: Column, bounds: Sequence[int]) -> Column:
    """Index of the first bound above ``value`` (bounds non-decreasing), capped at the last.

    A balanced tree of comparisons, so a lookup costs ``log2(len(bounds))`` steps per row.
    """
    from pyspark.sql import functions as F

    if not bounds:
        msg = "bucket: needs at least one bound"
        raise ValueError(msg)

    def subtree(low: int, high: int) -> Column:
        if low == high:
            return F.lit(low)
        middle = (low + high) // 2
        return F.when(value < F.lit(bounds[middle]), subtree(low, middle)).otherwise(
            subtree(middle + 1, high)
        )

    return subtree(0, len(bounds) - 1)


def lookup(index: Column, values: Sequence[Any]) -> Column:
    """``values[index]`` for a 0-based integer column (a literal array, no join)."""
    from pyspark.sql import functions as F

    return F.element_at(F.array(*(F.lit(value) for value in values)), index.cast("int") + 1)
