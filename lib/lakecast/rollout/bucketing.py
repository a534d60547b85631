"""Sticky bucketing: one targeting key, one bucket, for as long as the flag keeps its name.

A key is hashed with murmur3 32-bit (``mmh3.hash(f"{flag}:{key}", seed=0, signed=False)``)
into one of 10,000 buckets. A percentage covers the buckets below ``percent * 100``, so raising
a percentage only adds keys, and 0.01 % is the finest step.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import mmh3
import numpy as np
import numpy.typing as npt

BUCKETS = 10_000
BUCKETS_PER_PERCENT = BUCKETS // 100


def bucket(flag: str, key: str) -> int:
    """The bucket (0..9,999) of ``key`` under ``flag``; the same inputs always give the same one."""
    return mmh3.hash(f"{flag}:{key}", seed=0, signed=False) % BUCKETS


def buckets(flag: str, keys: Iterable[str]) -> npt.NDArray[np.int64]:
    """The buckets of many keys at once, as an int64 array in the order of ``keys``.

    The hash itself is per key (murmur3 has no array form in mmh3), but building the array in
    one pass keeps the rest of a micro-batch's routing vectorised.
    """
    prefix = f"{flag}:"
    hashes = np.fromiter(
        (mmh3.hash(prefix + key, seed=0, signed=False) for key in keys), dtype=np.int64
    )
    return hashes % BUCKETS


def percent_to_buckets(percent: float) -> int:
    """How many buckets a percentage covers (rounded to the 0.01 % a bucket stands for).

    Raises:
        ValueError: the percentage is outside 0..100.
    """
    if not 0.0 <= percent <= 100.0:
        msg = f"percentage must be within 0..100, found {percent}"
        raise ValueError(msg)
    return round(percent * BUCKETS_PER_PERCENT)


def in_percentage(bucket_id: int, percent: float) -> bool:
    """Whether a bucket falls inside the first ``percent`` % of buckets."""
    return bucket_id < percent_to_buckets(percent)


def split_edges(percents: Sequence[float]) -> npt.NDArray[np.int64]:
    """Upper bucket edges of consecutive allocations (``[10, 30]`` -> ``[1000, 4000]``).

    Allocations take consecutive bucket ranges in the order given, so growing the first one
    only adds keys to it. Rounding is done on the running sum, so the edges never overlap.

    Raises:
        ValueError: a share is negative or the shares add up to more than 100 %.
    """
    if any(share < 0 for share in percents):
        msg = f"allocation shares must not be negative, found {list(percents)}"
        raise ValueError(msg)
    running = np.cumsum(np.asarray(percents, dtype=np.float64))
    if running.size and running[-1] > 100.0 + 1e-9:
        msg = f"allocation shares add up to {running[-1]:.4g} %, more than 100 %"
        raise ValueError(msg)
    return np.minimum(np.rint(running * BUCKETS_PER_PERCENT).astype(np.int64), BUCKETS)


def allocate(
    bucket_ids: npt.NDArray[np.int64], edges: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """The allocation index of each bucket; ``len(edges)`` means "past every allocation"."""
    return np.searchsorted(edges, bucket_ids, side="right").astype(np.int64)
