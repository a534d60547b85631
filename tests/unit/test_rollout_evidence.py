"""Pooling workers' samples into per-variant evidence for the canary analysis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from lakecast.rollout.evidence import SampleBook

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def sample(source: str, second: int, **variants: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "sample",
        "source": source,
        "ts": T0 + timedelta(seconds=second),
        "model": {"name": "purchase"},
        "variants": variants,
    }


def test_users_are_counted_once_per_worker_not_once_per_sample() -> None:
    # 80 users, 15 of them in the candidate's buckets, each active in all ten samples of
    # worker w-0; worker w-1 serves 5 other candidate users. Summing per-sample counts
    # would report 150 + 5 users and make any split test fail on ten-fold repeats.
    book = SampleBook("purchase")
    for second in range(10):
        book.add(sample("w-0", second, candidate={"records": 30, "users": 15}))
        book.add(sample("w-0", second, champion={"records": 90, "users": 65}))
    book.add(sample("w-1", 3, candidate={"records": 5, "users": 5}))
    pooled = book.window(T0, T0 + timedelta(seconds=60))
    assert (pooled["candidate"].users, pooled["champion"].users) == (20, 65)
    assert (pooled["candidate"].records, pooled["candidate"].samples) == (305, 11)
