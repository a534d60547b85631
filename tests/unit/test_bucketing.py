"""Sticky bucketing: deterministic, monotone in the percentage, uniform."""

from __future__ import annotations

import mmh3
import numpy as np
import pytest
from scipy import stats

from lakecast.rollout.bucketing import (
    BUCKETS,
    allocate,
    bucket,
    buckets,
    in_percentage,
    percent_to_buckets,
    split_edges,
)

KEYS = [f"user-{i}" for i in range(20_000)]


def test_bucket_is_the_documented_murmur3_formula() -> None:
    for key in ("user-1", "ü-ñ", ""):
        expected = mmh3.hash(f"new-model:{key}", seed=0, signed=False) % 10_000
        assert bucket("new-model", key) == expected


def test_same_key_same_bucket_every_time() -> None:
    first = buckets("new-model", KEYS)
    again = buckets("new-model", KEYS)
    assert np.array_equal(first, again)
    assert [bucket("new-model", key) for key in KEYS[:500]] == first[:500].tolist()


def test_flag_name_salts_the_buckets() -> None:
    # Two flags must not put the same users in their first 10 %, or every experiment
    # would test on the same people.
    a = set(np.flatnonzero(buckets("flag-a", KEYS) < 1000))
    b = set(np.flatnonzero(buckets("flag-b", KEYS) < 1000))
    overlap = len(a & b) / len(a)
    assert 0.05 < overlap < 0.15


def test_raising_a_percentage_only_adds_keys() -> None:
    ids = buckets("new-model", KEYS)
    previous: set[str] = set()
    for percent in (1, 5, 10, 20, 25, 50, 99.99, 100):
        chosen = {key for key, b in zip(KEYS, ids, strict=True) if in_percentage(int(b), percent)}
        assert previous <= chosen
        assert abs(len(chosen) / len(KEYS) - percent / 100) < 0.02
        previous = chosen
    assert previous == set(KEYS)


def test_ten_percent_is_a_subset_of_twenty() -> None:
    ids = buckets("new-model", KEYS)
    at_10 = {k for k, b in zip(KEYS, ids, strict=True) if in_percentage(int(b), 10)}
    at_20 = {k for k, b in zip(KEYS, ids, strict=True) if in_percentage(int(b), 20)}
    assert at_10 < at_20


def test_buckets_are_uniform_over_a_million_keys() -> None:
    ids = buckets("uniformity", (f"k{i}" for i in range(1_000_000)))
    assert ids.min() >= 0
    assert ids.max() < BUCKETS
    # 100 cells of 100 buckets each: 10,000 keys expected per cell.
    counts = np.bincount(ids // 100, minlength=100)
    result = stats.chisquare(counts)
    assert result.pvalue > 0.001
    # And over the 10,000 buckets themselves (100 keys expected each).
    assert stats.chisquare(np.bincount(ids, minlength=BUCKETS)).pvalue > 0.001


def test_percent_to_buckets_rounds_to_hundredths() -> None:
    assert percent_to_buckets(0) == 0
    assert percent_to_buckets(0.01) == 1
    assert percent_to_buckets(5) == 500
    assert percent_to_buckets(100) == BUCKETS
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        percent_to_buckets(101)


def test_split_edges_and_allocate() -> None:
    edges = split_edges([10, 30])
    assert edges.tolist() == [1000, 4000]
    ids = np.array([0, 999, 1000, 3999, 4000, 9999], dtype=np.int64)
    assert allocate(ids, edges).tolist() == [0, 0, 1, 1, 2, 2]
    # A zero share gets nothing.
    assert allocate(np.array([0, 5000]), split_edges([0, 100])).tolist() == [1, 1]
    with pytest.raises(ValueError, match="more than 100"):
        split_edges([60, 50])
    with pytest.raises(ValueError, match="negative"):
        split_edges([-1, 50])
