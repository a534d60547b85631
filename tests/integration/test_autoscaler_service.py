"""The autoscaler service on the real broker, acting through a pool of real processes."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata
from prometheus_client import REGISTRY

from lakecast.autoscaling.policy import parse_policy
from lakecast.autoscaling.pool import WorkerPool
from lakecast.autoscaling.service import AutoscalerService, GroupLagProbe
from lakecast.config import KafkaSettings
from lakecast.kafka.clients import build_producer
from lakecast.kafka.timestamps import to_epoch, to_iso
from lakecast.testing.clock import wait_for
from lakecast.testing.kafka import read_json
from lakecast.testing.samples import synthetic_sample

HOLD_S = 4.0
STABILISATION_S = 1.5
POLICY = parse_policy(
    {
        "scale_up_policy": {"metric_type": "CPUUtilization", "target_value": 70},
        "scale_down_policy": {"metric_type": "CPUUtilization", "target_value": 30},
        "consumer_lag": {"lag_threshold": 100, "activation_lag_threshold": 10},
        "min_replicas": 1,
        "max_replicas": 4,
        "max_step": 4,
        "windows": {
            "evaluation_interval_s": 0.3,
            "scale_down_stabilization_s": STABILISATION_S,
            "sample_max_age_s": 3,
        },
        "anomalies": {"hold_s": HOLD_S, "metrics": ["records_in_per_s", "lag"]},
    }
)
SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


class Feeder:
    """Sends one worker sample every 0.2 s with the lag and CPU the test sets."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.producer = build_producer(
            KafkaSettings(bootstrap_servers=bootstrap), mode="at_least_once", client_id="feeder"
        )
        self.topic = topic
        self.lag = 0
        self.cpu = 50.0
        self.rate = 150.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def send(self, record: dict[str, Any] | bytes) -> None:
        value = record if isinstance(record, bytes) else json.dumps(record).encode()
        self.producer.send(self.topic, key=b"test", value=value)
        self.producer.flush(timeout=10)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.send(
                synthetic_sample(
                    "w-0",
                    time.time(),
                    records_in_per_s=self.rate,
                    cpu_percent=self.cpu,
                    lag={"events:0": self.lag},
                    partitions=6,
                )
            )
            self.stop.wait(0.2)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.producer.close()


def read_scaling(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    return [r for r in read_json(bootstrap, topic) if r.get("kind") == "scaling"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_autoscaler_scales_up_on_lag_holds_during_an_anomaly_then_scales_down(
    bootstrap: str, topic_factory: Callable[..., str], consumer_group: str
) -> None:
    metrics = topic_factory("metrics")
    pool = WorkerPool(SLEEPER, name="sleeper", stop_timeout_s=2.0)
    service = AutoscalerService(
        KafkaSettings(bootstrap_servers=bootstrap),
        metrics,
        POLICY,
        group="inference-test",
        pool=pool,
        partitions=6,
        group_id=consumer_group,
        from_beginning=True,
        poll_timeout_ms=100,
    )
    feeder = Feeder(bootstrap, metrics)
    # Bad records first: the service logs, counts and skips them.
    bad_sample = {**synthetic_sample("w-x", time.time()), "cpu_percent": "hot"}
    bad_anomaly = {"kind": "anomaly", "source": "all", "ts": to_iso(time.time()), "score": 1}
    for bad in (b"\xff\xfe", bad_sample, bad_anomaly):
        feeder.send(bad)
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(
            lambda: pool.live() == 1,
            what="the initial worker (min_replicas)",
            timeout_s=30,
            every_s=0.05,
        )
        feeder.thread.start()
        for lag in (50, 150, 250, 400):  # growing lag: ceil(lag / 100) workers, at most 4
            feeder.lag = lag
            time.sleep(0.4)
        wait_for(lambda: pool.live() == 4, what="scale-up to 4 workers", timeout_s=30, every_s=0.05)
        pids = pool.pids
        assert all(alive(pid) for pid in pids)

        # The lag drains and CPU falls; an anomaly on the lag is open for HOLD_S seconds.
        feeder.lag, feeder.cpu = 0, 5.0
        anomaly_ts = time.time()
        feeder.send(
            {
                "kind": "anomaly",
                "source": "all",
                "ts": to_iso(anomaly_ts),
                "metric": "lag",
                "score": 0.99,
                "value": 0,
            }
        )
        drained = time.time()
        wait_for(
            lambda: pool.live() == 1, what="scale-down after the hold", timeout_s=30, every_s=0.05
        )
        assert thread.is_alive(), "a bad record stopped the autoscaler"
    finally:
        feeder.close()
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert pool.live() == 0, "the pool's workers outlived the service"
    assert not any(alive(pid) for pid in pids)
    assert service.stats.bad_records == 3

    records = read_scaling(bootstrap, metrics)
    assert len(records) == service.stats.written
    ups = [r for r in records if r["desired"] > r["current"]]
    assert ups, "no scale-up record"
    assert ups[0]["metric"] == "lag"
    assert max(r["desired"] for r in ups) == 4
    downs = [r for r in records if r["desired"] < r["current"]]
    assert downs, "no scale-down record"
    first_down = to_epoch(downs[0]["ts"])
    # Not before the stabilisation window after the drain, nor while the anomaly was open.
    assert first_down >= drained + STABILISATION_S - 0.5
    assert first_down >= anomaly_ts + HOLD_S - 0.01
    blocked = [r for r in records if "scale-down blocked" in r["reason"]]
    assert blocked, "no decision was held by the open anomaly"
    assert all(anomaly_ts <= to_epoch(r["ts"]) < anomaly_ts + HOLD_S for r in blocked)
    assert all(r["desired"] == r["current"] == 4 for r in blocked)
    assert downs[-1]["desired"] == 1
    desired = REGISTRY.get_sample_value("lakecast_desired_replicas", {"group": "inference-test"})
    assert desired == records[-1]["desired"]


def test_lag_probe_measures_committed_against_end_offsets(
    bootstrap: str, topic_factory: Callable[..., str], consumer_group: str
) -> None:
    topic = topic_factory("events", partitions=2)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(30):
        producer.send(topic, value=b"x", partition=0 if i < 18 else 1)
    producer.flush(timeout=30)
    producer.close()
    committer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=consumer_group, enable_auto_commit=False
    )
    committer.commit({TopicPartition(topic, 0): OffsetAndMetadata(10, "", -1)})
    committer.close()
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    probe = GroupLagProbe(kafka, consumer_group, [topic])
    fresh = GroupLagProbe(kafka, f"{consumer_group}-never-started", [topic])
    by_lag = POLICY.model_copy(
        update={"consumer_lag": POLICY.consumer_lag.model_copy(update={"lag_threshold": 5.0})}
    )
    service = AutoscalerService(kafka, "unused", by_lag, group=consumer_group)
    try:
        lag = probe.measure()
        unstarted = fresh.measure()
        decision = service.decide(time.time(), probe)
    finally:
        probe.close()
        fresh.close()
    # No worker runs and no sample came: the broker's lag (20) activates the group, and the
    # lag rule ceil(20 / 5) = 4 is capped at the 2 partitions the probe found.
    assert (decision.current, decision.desired, decision.metric) == (0, 2, "lag")
    assert decision.value == 20
    # A group that never committed has all of its input still to read.
    assert unstarted.total == 30
    # Partition 0: 18 written, 10 committed; partition 1: 12 written, never committed.
    assert lag.by_partition == {f"{topic}:0": 8, f"{topic}:1": 12}
    assert lag.total == 20
    assert lag.partitions == 2


def test_idle_group_scales_to_zero_and_wakes_on_new_events(
    bootstrap: str, topic_factory: Callable[..., str], consumer_group: str
) -> None:
    metrics = topic_factory("metrics")
    events = topic_factory("events", partitions=2)
    to_zero = POLICY.model_copy(
        update={
            "min_replicas": 0,
            "consumer_lag": POLICY.consumer_lag.model_copy(update={"lag_threshold": 20.0}),
        }
    )
    pool = WorkerPool(SLEEPER, name="sleeper", stop_timeout_s=2.0)
    service = AutoscalerService(
        KafkaSettings(bootstrap_servers=bootstrap),
        metrics,
        to_zero,
        group=consumer_group,
        input_topics=[events],
        pool=pool,
        group_id=f"autoscaler-{consumer_group}",
        from_beginning=True,
        poll_timeout_ms=100,
    )
    feeder = Feeder(bootstrap, metrics)
    feeder.cpu = 1.0
    feeder.rate = 0.0
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        feeder.thread.start()
        wait_for(
            lambda: len(service.decisions) >= 3,
            what="the first decisions",
            timeout_s=30,
            every_s=0.05,
        )
        assert pool.live() == 0
        assert all(d.desired == 0 for d in service.decisions)

        # 50 new events, nobody consuming: the broker's lag wakes the group up.
        for i in range(50):
            producer.send(events, value=b"event", partition=i % 2)
        producer.flush(timeout=30)
        wait_for(
            lambda: pool.live() == 2,
            what="activation: ceil(50 / 20) capped at 2 partitions",
            timeout_s=30,
            every_s=0.05,
        )

        # The group catches up (its offsets reach the end) and nothing more arrives.
        committer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=consumer_group, enable_auto_commit=False
        )
        committer.commit({TopicPartition(events, p): OffsetAndMetadata(25, "", -1) for p in (0, 1)})
        committer.close()
        woke = time.time()
        wait_for(
            lambda: pool.live() == 0, what="scale to zero once idle", timeout_s=30, every_s=0.05
        )
    finally:
        producer.close()
        feeder.close()
        stop.set()
        thread.join(timeout=30)
    decisions = list(service.decisions)
    up = next(d for d in decisions if d.desired > d.current)
    assert (up.current, up.desired, up.metric) == (0, 2, "lag")
    assert "activation" in up.reason
    down = next(d for d in decisions if d.ts > woke and d.desired < d.current)
    assert (down.desired, down.metric) == (0, "idle")
    assert down.ts >= woke + to_zero.windows.scale_down_stabilization_s - 0.5
