"""Sample checking, fleet aggregation and per-series state of the monitor."""

from __future__ import annotations

import pytest

from lakecast.errors import InvalidRecordError
from lakecast.monitoring.detectors import make_detector
from lakecast.monitoring.series import (
    FleetAggregator,
    SeriesState,
    aggregate,
    baseline_stats,
    parse_sample,
)
from lakecast.testing.samples import synthetic_sample

T0 = 1_700_000_000.0


def test_parse_sample_picks_the_watched_figures() -> None:
    record = synthetic_sample(
        "w-1",
        T0,
        records_in_per_s=250.0,
        latency_p99_ms=42.0,
        lag={"events:0": 7, "events:1": 5},
        cpu_percent=61.5,
        dlq_rate=0.02,
        score_mean=0.4,
    )
    sample = parse_sample(record)
    assert sample.source == "w-1"
    assert sample.ts == pytest.approx(T0)
    assert sample.values == {
        "records_in_per_s": 250.0,
        "latency_p99_ms": 42.0,
        "lag": 12.0,
        "cpu_percent": 61.5,
        "dlq_rate": 0.02,
        "score_mean": 0.4,
    }
    assert sample.partition_lags == {"events:0": 7.0, "events:1": 5.0}


def test_an_empty_window_has_no_latency_or_score() -> None:
    sample = parse_sample(synthetic_sample("w", T0, latency_p99_ms=None, score_mean=None))
    assert sample.values["latency_p99_ms"] is None
    assert sample.values["score_mean"] is None


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"records_in_per_s": "fast"}, "records_in_per_s", "must be a finite number"),
        ({"cpu_percent": -3}, "cpu_percent", "must not be negative"),
        ({"latency_ms": [1, 2]}, "latency_ms", "must be an object"),
        ({"latency_ms": {"p99": "slow"}}, "latency_ms.p99", "must be a finite number"),
        ({"ts": "yesterday"}, "ts", "not ISO-8601"),
        ({"source": ""}, "source", "non-empty string"),
        ({"lag": {"events:0": None}}, "lag['events:0']", "finite number"),
        ({"dlq_rate": True}, "dlq_rate", "finite number"),
    ],
)
def test_a_bad_sample_names_its_field(change: dict[str, object], field: str, words: str) -> None:
    record = {**synthetic_sample("w-1", T0), **change}
    with pytest.raises(InvalidRecordError, match=words) as info:
        parse_sample(record)
    assert info.value.field == field


def test_a_sample_missing_required_fields_lists_them() -> None:
    record = synthetic_sample("w-1", T0)
    del record["cpu_percent"], record["lag_total"]
    with pytest.raises(InvalidRecordError, match=r"\['lag_total', 'cpu_percent'\] missing"):
        parse_sample(record)


def test_aggregate_sums_rates_takes_worst_p99_and_weighs_rates() -> None:
    a = parse_sample(
        synthetic_sample(
            "a",
            T0,
            records_in_per_s=100,
            latency_p99_ms=10,
            cpu_percent=20,
            dlq_rate=0.0,
            score_mean=0.2,
            lag={"e:0": 5},
        )
    )
    b = parse_sample(
        synthetic_sample(
            "b",
            T0 + 0.5,
            records_in_per_s=300,
            latency_p99_ms=50,
            cpu_percent=60,
            dlq_rate=0.1,
            score_mean=0.6,
            lag={"e:0": 2, "e:1": 4},
        )
    )
    values = aggregate([a, b])
    assert values["records_in_per_s"] == 400
    assert values["latency_p99_ms"] == 50
    assert values["cpu_percent"] == 40
    # Partition e:0 reported by both (a rebalance): the newer report (b's) counts once.
    assert values["lag"] == 6
    # 0 of 100 and 30 of 300 records dead-lettered.
    assert values["dlq_rate"] == pytest.approx(30 / 400)
    assert values["score_mean"] == pytest.approx((0.2 * 100 + 0.6 * 300) / 400)


def test_fleet_windows_close_when_a_later_window_starts() -> None:
    fleet = FleetAggregator(window_s=5.0, max_age_s=15.0)
    assert fleet.add(parse_sample(synthetic_sample("a", T0 + 0.1, records_in_per_s=10))) == []
    assert fleet.add(parse_sample(synthetic_sample("b", T0 + 0.2, records_in_per_s=20))) == []
    closed = fleet.add(parse_sample(synthetic_sample("a", T0 + 5.1, records_in_per_s=11)))
    assert len(closed) == 1
    assert closed[0].workers == 2
    assert closed[0].values["records_in_per_s"] == 30
    assert closed[0].ts == pytest.approx(T0 + 5.0)
    # The next window holds a's new sample and b's last one (still fresh).
    (second,) = fleet.close()
    assert second.values["records_in_per_s"] == 31
    # A straggler from a closed window does not reopen it.
    assert fleet.add(parse_sample(synthetic_sample("b", T0 + 6.0, records_in_per_s=5))) == []
    assert fleet.close() == []


def test_a_silent_worker_leaves_the_fleet_after_max_age() -> None:
    fleet = FleetAggregator(window_s=1.0, max_age_s=3.0)
    fleet.add(parse_sample(synthetic_sample("a", T0, records_in_per_s=10)))
    fleet.add(parse_sample(synthetic_sample("b", T0, records_in_per_s=10)))
    for step in range(1, 6):
        closed = fleet.add(parse_sample(synthetic_sample("a", T0 + step, records_in_per_s=10)))
    assert closed[0].workers == 1
    assert closed[0].values["records_in_per_s"] == 10


def test_series_cooldown_makes_one_spike_one_alert() -> None:
    state = SeriesState("w", "latency_p99_ms", make_detector("null", level=0.9), context=4)
    alerts = []
    for step in range(10):
        point = state.update(T0 + step, 10.0 + step)
        assert point is not None
        alerts.append(state.should_alert(point, threshold=0.8, cooldown_s=5.0))
    assert [i for i, a in enumerate(alerts) if a] == [0, 5]
    # The window shows the last points, the baseline the ones before the scored point.
    assert [v for _, v in point.window] == [16.0, 17.0, 18.0, 19.0]
    assert point.baseline["n"] == 4
    assert point.baseline["max"] == 18.0


def test_series_ignores_points_not_newer_than_the_last() -> None:
    state = SeriesState("w", "lag", make_detector("null"), context=3)
    assert state.update(T0, 1.0) is not None
    assert state.update(T0, 2.0) is None
    assert state.update(T0 - 1, 2.0) is None


def test_baseline_of_nothing_is_empty() -> None:
    assert baseline_stats([]) == {
        "n": 0,
        "mean": None,
        "std": None,
        "median": None,
        "min": None,
        "max": None,
    }
