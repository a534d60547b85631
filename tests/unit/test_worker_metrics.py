"""observe_many fills a Prometheus histogram exactly as one observe() per value would."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram

from lakecast.serving.metrics import observe_many

pytestmark = pytest.mark.unit

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _samples(histogram: Histogram) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("le", "")): s.value
        for metric in histogram.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


def test_observe_many_equals_observe_per_value() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate(
        [
            rng.exponential(0.05, 5_000),
            np.asarray(BUCKETS),  # exactly on a bound: counted in that bucket (le)
            [0.0, -0.001, 7.5, 1e9],  # zero, negative, beyond the last bound
        ]
    )
    one_by_one = Histogram("one", "d", buckets=BUCKETS, registry=CollectorRegistry())
    for value in values.tolist():
        one_by_one.observe(value)
    batched = Histogram("one", "d", buckets=BUCKETS, registry=CollectorRegistry())
    observe_many(batched, values[: len(values) // 2])
    observe_many(batched, values[len(values) // 2 :])
    observe_many(batched, np.empty(0))

    expected, found = _samples(one_by_one), _samples(batched)
    assert found.keys() == expected.keys()
    for key, value in expected.items():
        assert found[key] == pytest.approx(value), key
    assert found[("one_count", "")] == len(values)
