"""The worker's served-feature sample: which events, what a record holds, and that a full
queue or a failing send is counted and never raised."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from lakecast.config import DriftSettings
from lakecast.features.spec import FEATURE_COLUMNS, FEATURES_VERSION
from lakecast.kafka.serde import decode_event
from lakecast.serving.feature_log import FeatureLog, sampled
from lakecast.testing.events import event_payload
from lakecast.testing.features import training_matrix

pytestmark = pytest.mark.unit

MODEL = {"name": "purchase", "version": "1.0.0", "sha256": "ab"}


def _events(count: int) -> list[Any]:
    return [decode_event(event_payload(i)[1]) for i in range(count)]


def test_the_sample_is_the_same_events_at_the_asked_rate() -> None:
    ids = [f"e-{i}" for i in range(20_000)]
    chosen = sampled(ids, 0.05)
    assert 0.04 < chosen.mean() < 0.06
    assert np.array_equal(chosen, sampled(list(reversed(ids)), 0.05)[::-1])
    assert sampled(ids, 1.0).all() and not sampled(ids, 0.0).any()


def test_a_sampled_record_holds_the_served_vector_by_name_and_its_flags() -> None:
    log = FeatureLog(DriftSettings(sample_rate=1.0), "served", "worker-1")
    events = _events(6)
    matrix = training_matrix(6)
    matrix[2, FEATURE_COLUMNS.index("hour_sin")] = 3.0
    broken, counts = log.violations(matrix)
    failures: list[str | None] = [None, None, None, "model failed", None, None]
    out = log.sample(events, [0, 2, 3, 5], [failures[p] for p in (0, 2, 3, 5)], matrix, broken,
                     MODEL, "champion")  # fmt: skip
    records = [orjson.loads(value) for _, value in out]
    assert [r["event_id"] for r in records] == ["e-0", "e-2", "e-5"]  # the failed one is not
    first = records[1]
    assert first["features"] == dict(zip(FEATURE_COLUMNS, matrix[2].tolist(), strict=True))
    assert first["model"] == MODEL and first["variant"] == "champion"
    assert first["features_version"] == FEATURES_VERSION and first["source"] == "worker-1"
    assert "hour_sin" in first["invariant_violations"]
    assert counts["hour_sin"] == 1
    assert out[0][0] == events[0].user_id.encode()


def test_a_full_queue_drops_and_counts_and_a_failing_send_is_counted() -> None:
    log = FeatureLog(DriftSettings(sample_rate=1.0, sample_queue=2), "served", "w")
    log.committed([(b"k", b"1"), (b"k", b"2"), (b"k", b"3")], {})
    assert log.dropped == 1
    assert [v for _, v in log.pending()] == [b"1", b"2"]

    def refuse(topic: str, key: bytes, value: bytes) -> Any:
        raise BufferError(f"{topic} buffer full")

    log.committed([(b"k", b"4")], {})
    log.start(refuse)
    log.stop(timeout_s=5)
    assert (log.failed, log.sent) == (1, 0)
