"""The monitor's scoring logic on synthetic fleets (no Kafka: the service test has it)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from prometheus_client import REGISTRY

from lakecast.errors import ConfigError
from lakecast.monitoring.detectors import DEFAULT_DETECTOR
from lakecast.monitoring.monitor import AnomalyMonitor, MonitorConfig
from lakecast.monitoring.series import parse_sample
from lakecast.testing.samples import Incident, synthetic_fleet

T0 = 1_700_000_000.0
CONFIG = MonitorConfig(
    detector="gaussian_tail",
    detector_params={"warmup": 12, "window": 200, "use_diff": 0, "alarm": 0.5},
    threshold=0.5,
    cooldown_s=30.0,
    context=10,
    fleet_window_s=1.0,
    fleet_max_age_s=3.0,
)
SPIKE = Incident("latency_p99_ms", start=40, steps=3, factor=10.0, workers=("w-1",))
DROP = Incident("records_in_per_s", start=55, steps=15, factor=0.3)


def run(records: list[dict[str, Any]], config: MonitorConfig = CONFIG) -> list[dict[str, Any]]:
    monitor = AnomalyMonitor(config)
    found: list[dict[str, Any]] = []
    for record in records:
        found += monitor.observe(parse_sample(record))
    return found + monitor.close_fleet_window()


def epoch(anomaly: dict[str, Any]) -> float:
    from lakecast.kafka.timestamps import to_epoch

    return to_epoch(anomaly["ts"])


def test_flags_a_latency_spike_and_a_throughput_drop_within_a_few_samples() -> None:
    records = list(synthetic_fleet(2, 70, t0=T0, incidents=(SPIKE, DROP), seed=1))
    found = run(records)
    by_series: dict[str, list[dict[str, Any]]] = {}
    for anomaly in found:
        by_series.setdefault(anomaly["series"], []).append(anomaly)
    assert all(epoch(a) >= T0 + SPIKE.start for a in found), "an alarm before any incident"
    (spike,) = by_series["w-1/latency_p99_ms"]
    assert T0 + 40 <= epoch(spike) < T0 + 43
    assert spike["direction"] == "high"
    assert spike["value"] > 5 * spike["baseline"]["median"]
    assert spike["window"]["values"][-1] == spike["value"]
    assert len(spike["window"]["values"]) == CONFIG.context
    assert spike["detector"] == "gaussian_tail"
    assert spike["score"] >= CONFIG.threshold
    (fleet_spike,) = by_series["all/latency_p99_ms"]
    assert T0 + 40 <= epoch(fleet_spike) <= T0 + 43
    (drop,) = by_series["all/records_in_per_s"]
    assert T0 + 55 <= epoch(drop) <= T0 + 58
    assert drop["direction"] == "low"
    assert drop["workers"] == 2
    assert drop["scope"] == "fleet"
    # The unaffected worker's latency stays quiet.
    assert "w-0/latency_p99_ms" not in by_series
    # The gauge holds each series' latest score (the spike is long over by the last sample).
    last = REGISTRY.get_sample_value("lakecast_anomaly_score", {"series": "w-1/latency_p99_ms"})
    assert last is not None
    assert 0.0 <= last < CONFIG.threshold
    value = REGISTRY.get_sample_value(
        "lakecast_monitored_value", {"series": "all/records_in_per_s"}
    )
    assert value == pytest.approx(sum(r["records_in_per_s"] for r in records[-2:]))


@pytest.mark.parametrize("seed", [2, 3])
def test_stays_quiet_on_steady_noisy_traffic(seed: int) -> None:
    records = list(synthetic_fleet(3, 80, t0=T0, seed=seed, noise=0.08))
    assert run(records) == []


def test_the_default_detector_finds_a_spike_and_a_drop_after_its_warm_up_and_nothing_else() -> None:
    # The registry's default detector at the monitor's default threshold, on a steady fleet
    # long enough for its warm-up (novelty_likelihood: 200 points to learn the range).
    spike = Incident("latency_p99_ms", start=700, steps=3, factor=10.0, workers=("w-1",))
    drop = Incident("records_in_per_s", start=760, steps=15, factor=0.3)
    config = MonitorConfig(cooldown_s=30.0, fleet_window_s=1.0, fleet_max_age_s=3.0)
    assert config.detector == DEFAULT_DETECTOR
    records = list(synthetic_fleet(2, 800, t0=T0, incidents=(spike, drop), seed=1))
    found = run(records, config)
    assert all(epoch(a) >= T0 + spike.start for a in found), "an alarm on the steady fleet"
    first: dict[str, float] = {}
    for anomaly in sorted(found, key=epoch):
        first.setdefault(anomaly["series"], epoch(anomaly) - T0)
    assert 700 <= first["w-1/latency_p99_ms"] < 703
    assert 700 <= first["all/latency_p99_ms"] <= 703
    assert 760 <= first["all/records_in_per_s"] <= 763
    assert "w-0/latency_p99_ms" not in first


def test_an_unknown_detector_is_refused_when_configured() -> None:
    with pytest.raises(ConfigError, match="unknown"):
        MonitorConfig(detector="crystal_ball")
    with pytest.raises(ConfigError, match="unknown metrics"):
        MonitorConfig(detector="null", metrics=("happiness",))


def test_a_latency_fall_is_not_news_and_does_not_swallow_the_spike_after_it() -> None:
    # As in the real-worker loop: traffic thins, latency falls, then a stall sends it up
    # within the cooldown. The fall must neither alert nor start the cooldown.
    fall = Incident("latency_p99_ms", start=40, steps=4, factor=0.2, workers=("w-1",))
    spike = Incident("latency_p99_ms", start=46, steps=2, factor=10.0, workers=("w-1",))
    records = list(synthetic_fleet(2, 60, t0=T0, incidents=(fall, spike), seed=4))
    latency = [a for a in run(records) if a["series"] == "w-1/latency_p99_ms"]
    assert [(a["direction"], epoch(a) >= T0 + spike.start) for a in latency] == [("high", True)]

    both = run(records, dataclasses.replace(CONFIG, alert_on={"latency_p99_ms": "both"}))
    latency = [a for a in both if a["series"] == "w-1/latency_p99_ms"]
    # Alerting on both sides: the fall is flagged, and its cooldown hides the spike.
    assert [a["direction"] for a in latency] == ["low"]


def test_an_alert_direction_must_be_high_low_or_both_of_a_known_metric() -> None:
    with pytest.raises(ConfigError, match=r"alert_on \{'lag': 'up'\}"):
        MonitorConfig(detector="null", alert_on={"lag": "up"})
    with pytest.raises(ConfigError, match="unknown metrics"):
        MonitorConfig(detector="null", alert_on={"happiness": "high"})


def _sample(source: str, ts: float) -> Any:
    from lakecast.kafka.timestamps import to_iso

    record = next(iter(synthetic_fleet(1, 1, t0=ts, seed=3)))
    return parse_sample(record | {"source": source, "ts": to_iso(ts)})


def test_forged_sources_cannot_grow_the_monitor_past_max_series() -> None:
    config = dataclasses.replace(CONFIG, max_series=40)
    monitor = AnomalyMonitor(config, clock=lambda: 0.0)
    for i in range(500):  # 500 forged worker ids, one sample each
        monitor.observe(_sample(f"forged-{i}", T0 + i))
    assert len(monitor) == config.max_series
    sources = {source for source, _ in monitor.watched}
    # The longest idle went first: the newest source and the fleet are still watched.
    assert "forged-499" in sources
    assert "all" in sources
    assert "forged-0" not in sources


def test_idle_series_are_forgotten_with_their_gauges() -> None:
    now = [0.0]
    config = dataclasses.replace(CONFIG, series_idle_s=60.0, per_worker=True)
    monitor = AnomalyMonitor(config, clock=lambda: now[0])
    for i in range(30):
        monitor.observe(_sample("w-old", T0 + i))
    gauge = ("lakecast_monitored_value", {"series": "w-old/latency_p99_ms"})
    assert REGISTRY.get_sample_value(*gauge) is not None
    now[0] = 61.0
    monitor.observe(_sample("w-new", T0 + 100))
    sources = {source for source, _ in monitor.watched}
    assert "w-old" not in sources
    assert "w-new" in sources
    assert REGISTRY.get_sample_value(*gauge) is None


def test_series_limits_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="max_series"):
        dataclasses.replace(CONFIG, max_series=0)


class _Committing:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def commit(self) -> None:
        if self.error is not None:
            raise self.error


def test_a_commit_refused_by_a_rebalance_does_not_stop_a_metrics_service() -> None:
    from kafka.errors import (
        CommitFailedError,
        KafkaTimeoutError,
        RebalanceInProgressError,
        TopicAuthorizationFailedError,
    )

    from lakecast.monitoring.metrics_topic import commit_read

    assert commit_read(_Committing(None), "monitor")  # type: ignore[arg-type]
    for moved in (RebalanceInProgressError(), CommitFailedError(), KafkaTimeoutError()):
        assert not commit_read(_Committing(moved), "monitor")  # type: ignore[arg-type]
    with pytest.raises(TopicAuthorizationFailedError):  # not about the group: still fatal
        commit_read(_Committing(TopicAuthorizationFailedError()), "monitor")  # type: ignore[arg-type]
