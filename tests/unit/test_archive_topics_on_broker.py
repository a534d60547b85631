"""Which archive targets a run starts, given the topics the broker holds."""

from __future__ import annotations

import pytest

from lakecast.errors import StreamError
from lakecast.lake.archive import ArchiveTarget, topics_on_broker

TARGETS = [
    ArchiveTarget("predictions", "predictions", "/lake/archive/predictions", "/cp/predictions"),
    ArchiveTarget("metrics", "metrics", "/lake/archive/metrics", "/cp/metrics"),
    ArchiveTarget("served_features", "served_features", "/lake/archive/sf", "/cp/sf"),
]


def test_an_available_now_run_skips_a_topic_the_broker_lacks() -> None:
    present, missing = topics_on_broker(
        TARGETS, {"predictions", "metrics", "events"}, available_now=True
    )
    assert [t.kind for t in present] == ["predictions", "metrics"]
    assert [t.kind for t in missing] == ["served_features"]


def test_every_topic_present_skips_nothing() -> None:
    present, missing = topics_on_broker(
        TARGETS, {"predictions", "metrics", "served_features"}, available_now=False
    )
    assert (present, missing) == (TARGETS, [])


def test_a_continuous_archive_refuses_to_start_naming_the_missing_topic() -> None:
    with pytest.raises(StreamError, match=r"no topic 'served_features' \(served_features\)"):
        topics_on_broker(TARGETS, {"predictions", "metrics"}, available_now=False)
