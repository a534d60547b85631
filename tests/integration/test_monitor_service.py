"""The monitor service on the real broker: synthetic samples in, anomaly records back out."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from lakecast.config import KafkaSettings
from lakecast.kafka.timestamps import to_epoch
from lakecast.monitoring.monitor import MonitorConfig, MonitorService
from lakecast.testing.clock import wait_for
from lakecast.testing.kafka import produce, read_json
from lakecast.testing.samples import Incident, synthetic_fleet, synthetic_sample

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


@contextmanager
def running(service: MonitorService) -> Iterator[threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive(), "the monitor did not stop on its stop event"


def bad_records() -> list[bytes]:
    missing = synthetic_sample("w-9", T0)
    del missing["cpu_percent"]
    wrong = {**synthetic_sample("w-9", T0), "records_in_per_s": "lots"}
    return [b"{not json", json.dumps(missing).encode(), json.dumps(wrong).encode()]


def test_monitor_flags_a_latency_spike_and_a_throughput_drop_and_skips_bad_records(
    bootstrap: str,
    topic_factory: Callable[..., str],
    consumer_group: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = topic_factory("metrics")
    spike = Incident("latency_p99_ms", start=40, steps=3, factor=10.0, workers=("w-1",))
    drop = Incident("records_in_per_s", start=55, steps=15, factor=0.3)
    samples = list(synthetic_fleet(2, 70, t0=T0, incidents=(spike, drop), seed=7))
    scaling = {"kind": "scaling", "source": "autoscaler", "ts": "2024-01-01T00:00:00Z"}
    values = [
        *bad_records(),
        json.dumps(scaling).encode(),
        *(json.dumps(s).encode() for s in samples),
    ]
    produce(bootstrap, metrics, [(b"test", value) for value in values])
    service = MonitorService(
        KafkaSettings(bootstrap_servers=bootstrap),
        metrics,
        CONFIG,
        group_id=consumer_group,
        from_beginning=True,
        poll_timeout_ms=100,
    )
    caplog.set_level(logging.ERROR, logger="lakecast.monitoring.metrics_topic")
    with running(service) as thread:
        wait_for(
            lambda: service.stats.samples == len(samples),
            what="every sample to be scored",
            timeout_s=60,
            every_s=0.1,
        )
        # The last fleet window closes once samples stop for a window's length.
        wait_for(
            lambda: not service.monitor.fleet.has_open_window,
            what="the last fleet window",
            timeout_s=60,
            every_s=0.1,
        )
        assert thread.is_alive(), "a bad record stopped the monitor"
    assert service.stats.bad_records == 3
    bad_offsets = sorted(r.offset for r in caplog.records if hasattr(r, "offset"))
    assert bad_offsets == [0, 1, 2]
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "not valid UTF-8 JSON" in messages
    assert "['cpu_percent'] missing" in messages
    assert "'records_in_per_s' must be a finite number" in messages

    anomalies = [r for r in read_json(bootstrap, metrics) if r["kind"] == "anomaly"]
    assert len(anomalies) == service.stats.written
    by_series: dict[str, list[dict[str, Any]]] = {}
    for anomaly in anomalies:
        by_series.setdefault(anomaly["series"], []).append(anomaly)
    # Quiet on the steady stretch: nothing before the first incident.
    assert all(to_epoch(a["ts"]) >= T0 + spike.start for a in anomalies)
    (worker_spike,) = by_series["w-1/latency_p99_ms"]
    assert T0 + 40 <= to_epoch(worker_spike["ts"]) < T0 + 43
    assert worker_spike["source"] == "w-1"
    assert worker_spike["value"] > 5 * worker_spike["baseline"]["median"]
    assert worker_spike["window"]["values"][-1] == worker_spike["value"]
    (fleet_spike,) = by_series["all/latency_p99_ms"]
    assert T0 + 40 <= to_epoch(fleet_spike["ts"]) <= T0 + 43
    (fleet_drop,) = by_series["all/records_in_per_s"]
    assert T0 + 55 <= to_epoch(fleet_drop["ts"]) <= T0 + 58
    assert fleet_drop["direction"] == "low"
    assert fleet_drop["value"] < 0.5 * fleet_drop["baseline"]["mean"]
    assert "w-0/latency_p99_ms" not in by_series
