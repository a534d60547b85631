"""The monitoring loop with real workers: the autoscaler's pool serves, the monitor watches.

One stream (uuid topics, three partitions), one registered model and one entity snapshot serve
one scenario, which the tests below judge from different sides. The autoscaler service runs
with a short-interval policy and a :class:`~lakecast.autoscaling.pool.WorkerPool` of real
``lakecast stream worker`` processes in the consumer group; the monitor service reads those
workers' own ``kind=sample`` records. In order:

1. no events: the group stays at zero workers;
2. a burst far above ``lag_threshold``: the broker's lag activates the group and the autoscaler
   adds workers within a few evaluations; they drain the lag while steady traffic goes on;
3. after the stabilisation window it scales back down to the one worker the traffic needs;
4. steady traffic through that worker: the monitor stays quiet;
5. the traffic drops to 5 %: the monitor flags the throughput within a few samples;
6. the worker stalls (SIGSTOP, as a GC pause or a starved host would): the monitor flags the
   latency spike within a few samples of its return;
7. the traffic stops: the idle group goes back to zero workers after the window;
8. new events: activation on lag, one worker serves them.

The assertions are on the ``kind=scaling`` and ``kind=anomaly`` records the services write to
the metrics topic, on the workers' own samples and on the worker processes; the scenario waits
on observed outcomes with generous deadlines, never on fixed sleeps.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from kafka.admin import KafkaAdminClient, NewTopic

from lakecast.autoscaling.policy import parse_policy
from lakecast.autoscaling.pool import WorkerPool
from lakecast.autoscaling.service import AutoscalerService, GroupLagProbe
from lakecast.config import KafkaSettings
from lakecast.kafka.groups import describe_group
from lakecast.monitoring.monitor import MonitorConfig, MonitorService
from lakecast.serving.worker_config import worker_command
from lakecast.testing.events import synthetic_payloads
from lakecast.testing.kafka import committed_total, produce
from lakecast.testing.models import served_lake
from lakecast.testing.workers import worker_options
from tests.e2e.loop_fixtures import (
    MetricsTail,
    Traffic,
    read_to_end,
    running,
    wait_until,
    wait_while_progressing,
    worker_processes,
)
from tests.e2e.worker_fixtures import PARTITIONS

if TYPE_CHECKING:
    from lakecast.local.broker import LocalBroker

SAMPLE_INTERVAL_S = 4.0
EVALUATION_INTERVAL_S = 1.0
STABILISATION_S = 6.0
LAG_THRESHOLD = 1000
BURST = 9000  # ceil(9000 / 1000) = 9 workers wanted, capped at the 3 partitions
STEADY_RATE = 100.0  # events/s: one worker's job, far below its capacity
DROP_RATE = 5.0
STALL_S = 8.0
WAKE_EVENTS = 300
TRAFFIC_FIRST_ID = 100_000  # the burst is e-0 ..
WAKE_FIRST_ID = 200_000
DETECTOR_WINDOW = 8  # samples behind each score
QUIET_SAMPLES = 5  # of steady traffic before the drop

# conf/autoscale-demo.json's shape with a one-second cadence. Both utilisation rules read the
# throughput per worker, which the test sets, instead of CPU, which the machine's load sets:
# below 450 events/s per worker the fleet shrinks to ceil(total / 500); the lag rule (KEDA's)
# does the scaling up. Zero replicas when idle, activation above 10 records of lag.
POLICY = parse_policy(
    {
        "scale_up_policy": {
            "metric_type": "RecordsInPerSecond",
            "target_value": 5000,
            "action": {"type": "proportional"},
        },
        "scale_down_policy": {
            "metric_type": "RecordsInPerSecond",
            "target_value": 500,
            "action": {"type": "proportional"},
        },
        "consumer_lag": {
            "lag_threshold": LAG_THRESHOLD,
            "activation_lag_threshold": 10,
            "cap_at_partitions": True,
        },
        "min_replicas": 0,
        "max_replicas": PARTITIONS,
        "max_step": 2,
        "tolerance": 0.1,
        "windows": {
            "evaluation_interval_s": EVALUATION_INTERVAL_S,
            "scale_down_stabilization_s": STABILISATION_S,
            "sample_max_age_s": 3 * SAMPLE_INTERVAL_S,
        },
        "anomalies": {"hold_s": 4, "metrics": ["records_in_per_s", "lag"]},
    },
    "<test: monitoring loop>",
)

# The Gaussian tail against the median and MAD of the last DETECTOR_WINDOW samples (robust:
# the odd slow sample of a worker on a loaded machine does not widen the spread the next one
# is measured with), no rest after an alarm (the cooldown keeps one anomaly per incident).
# A score of 0.55 is a surprise of about 12, some 7 robust standard deviations. Samples of
# several seconds: a worker's throughput over one or two seconds on a loaded 2-core machine
# scatters by 15 to 30 % (a batch committed just after a sample counts in the next one), which
# hides even a 95 % drop from any threshold that keeps the steady stretch quiet. In runs of
# this test at a load of 6 to 16 on 2 cores the steady stretch scored at most 0.4, the drop
# 0.7 to 1.0 and the stall 0.71 to 0.99.
MONITOR = MonitorConfig(
    detector="gaussian_tail",
    detector_params={"warmup": 5, "window": DETECTOR_WINDOW, "robust": True, "rest": 0},
    threshold=0.55,
    cooldown_s=20.0,
    context=DETECTOR_WINDOW,
    fleet_window_s=SAMPLE_INTERVAL_S,
    fleet_max_age_s=3 * SAMPLE_INTERVAL_S,
    metrics=("records_in_per_s", "latency_p99_ms"),
    source="monitor-e2e",
)


@dataclass
class LoopRun:
    """What one run of the scenario left behind, for the tests to judge."""

    metrics: MetricsTail
    marks: dict[str, float]  # epoch seconds at which each step began (see the module docstring)
    workers: list[str]  # the pool's worker ids in start order; the last one is the waking one
    events: Counter[str]  # every event id produced
    predictions: Counter[str]  # event id -> committed predictions
    buffered_dropped: int  # records the workers' loops dropped when partitions were revoked
    pool_left: int  # workers the pool still had after the autoscaler stopped
    processes_left: int  # worker processes still alive then
    logs: Path

    @property
    def survivor(self) -> str:
        return self.workers[0]  # the pool stops the newest workers first

    def decisions(self, after: float = 0.0) -> list[dict[str, Any]]:
        return self.metrics.of("scaling", after=after)

    def anomalies(self, metric: str | None = None, after: float = 0.0) -> list[dict[str, Any]]:
        found = self.metrics.of("anomaly", after=after)
        return [a for a in found if metric is None or a["metric"] == metric]


@pytest.fixture(scope="module")
def loop_run(kafka_broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory) -> LoopRun:
    """Run the scenario once for the module's tests."""
    bootstrap = kafka_broker.bootstrap_servers
    root = tmp_path_factory.mktemp("loop")
    lake = served_lake(root)
    run = uuid.uuid4().hex[:6]
    topics = {name: f"{name}-{run}" for name in ("events", "predictions", "dlq", "metrics")}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="lakecast-test-loop")
    admin.create_topics(
        [
            NewTopic(topics["events"], PARTITIONS, 1),
            NewTopic(topics["predictions"], PARTITIONS, 1),
            NewTopic(topics["dlq"], 1, 1),
            NewTopic(topics["metrics"], 1, 1),
        ]
    )
    admin.close()
    group = f"workers-{run}"
    kafka = KafkaSettings(bootstrap_servers=bootstrap)

    def command_of(worker_id: str) -> list[str]:
        options = worker_options(lake, topics, group, sample_interval_s=SAMPLE_INTERVAL_S)
        return worker_command(options.model_copy(update={"source_id": worker_id}), metrics_port=0)

    logs = root / "workers"
    logs.mkdir()
    pool = WorkerPool(
        command_of,
        name=f"loop-{run}",
        env={
            "LAKECAST__KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "LAKECAST__KAFKA__PARTITIONS": str(PARTITIONS),
        },
        stop_timeout_s=20.0,
        log_dir=logs,
    )
    autoscaler = AutoscalerService(
        kafka,
        topics["metrics"],
        POLICY,
        group=group,
        input_topics=[topics["events"]],
        pool=pool,
        group_id=f"autoscaler-{run}",
        from_beginning=True,
        poll_timeout_ms=200,
        source=f"autoscaler-{run}",
    )
    monitor = MonitorService(
        kafka, topics["metrics"], MONITOR, group_id=f"monitor-{run}", from_beginning=True
    )
    workers = [f"{pool.name}-{i}" for i in range(PARTITIONS + 1)]
    survivor = workers[0]
    marks: dict[str, float] = {}
    tail = MetricsTail(bootstrap, topics["metrics"])
    traffic = Traffic(bootstrap, topics["events"], first_id=TRAFFIC_FIRST_ID)
    probe = GroupLagProbe(kafka, group, [topics["events"]])

    def decided(current: int, after: float) -> bool:
        """A decision since ``after`` found ``current`` workers live in the pool."""
        return any(r["current"] == current for r in tail.of("scaling", after=after))

    def live_workers() -> set[str]:
        return set(worker_processes(topics["events"]))

    def samples_of(source: str, after: float = 0.0) -> list[dict[str, Any]]:
        return tail.of("sample", source=source, after=after)

    def dump_metrics() -> None:
        with (logs / "metrics.jsonl").open("wb") as out:
            out.writelines(orjson.dumps(r, default=str) + b"\n" for r in tail.of(""))

    def diagnose() -> str:
        dump_metrics()
        lines = [
            f"worker processes {sorted(live_workers())}; {describe_group(bootstrap, group)}",
            f"monitor: {monitor.stats}; autoscaler: {autoscaler.stats}",
            f"worker logs and the metrics topic: {logs}",
        ]
        lines += [
            f"  {r['ts']} {r['current']} -> {r['desired']} ({r['metric']}): {r['reason']}"
            for r in tail.of("scaling")[-6:]
        ]
        lines += [
            f"  anomaly {a['ts']} {a['series']} value {a['value']:.4g} score {a['score']:.3f}"
            for a in tail.of("anomaly")[-6:]
        ]
        return "\n".join(lines)

    def survivor_and(condition: Callable[[], bool]) -> Callable[[], bool]:
        """``condition``, failing at once if the one worker the steps rely on has exited."""

        def check() -> bool:
            if survivor not in live_workers():
                log = (logs / f"{survivor}.log").read_text(errors="replace").strip()
                last = log.splitlines()[-3:] if log else []
                pytest.fail(f"worker {survivor} exited; the end of its log: {last}")
            return condition()

        return check

    def flagged(metric: str, after: float, scopes: set[str]) -> bool:
        """The series of ``metric`` in each of ``scopes`` (worker, fleet) raised an anomaly."""
        found = {a["scope"] for a in tail.of("anomaly", after=after) if a["metric"] == metric}
        return scopes <= found

    stalled: list[int] = []
    try:
        with running(monitor, "monitor"), running(autoscaler, "autoscaler"):
            # 1. No events: the decisions keep the group at zero workers.
            wait_until(lambda: len(tail.of("scaling")) >= 3, "the first decisions", diagnose)

            # 2. The burst, and steady traffic after it: up to one worker per partition.
            marks["burst"] = time.time()
            produce(bootstrap, topics["events"], synthetic_payloads(BURST))
            traffic.set_rate(STEADY_RATE)
            wait_until(lambda: decided(PARTITIONS, marks["burst"]), "the scale-up", diagnose)
            wait_until(
                lambda: describe_group(bootstrap, group).client_ids == tuple(workers[:-1]),
                f"all {PARTITIONS} workers to join the group",
                diagnose,
            )
            marks["joined"] = time.time()
            wait_until(
                lambda: probe.measure().total < STEADY_RATE, "the burst's lag to drain", diagnose
            )
            marks["drained"] = time.time()

            # 3. After the stabilisation window, down to the one worker the traffic needs.
            wait_until(
                lambda: decided(1, marks["drained"]) and live_workers() == {survivor},
                "the scale-down to one worker",
                diagnose,
            )

            # 4. Steady traffic through one worker. The quiet stretch starts a few samples
            # after it owns every partition: the rebalance is a real disturbance.
            def settled() -> list[dict[str, Any]]:
                samples = samples_of(survivor, after=marks["drained"])
                return [s for s in samples if s["partitions"] == PARTITIONS][2:]

            wait_until(
                survivor_and(lambda: bool(settled())),
                "the survivor to own every partition",
                diagnose,
            )
            marks["steady"] = settled()[0]["epoch"]
            wait_until(
                survivor_and(
                    lambda: len(samples_of(survivor, after=marks["steady"])) >= QUIET_SAMPLES
                ),
                f"{QUIET_SAMPLES} samples of steady traffic",
                diagnose,
            )

            # 5. A throughput drop.
            marks["drop"] = traffic.set_rate(DROP_RATE)
            wait_until(
                survivor_and(lambda: flagged("records_in_per_s", marks["drop"], {"worker"})),
                "the worker's anomaly on the dropped throughput",
                diagnose,
                timeout_s=45,
            )

            # 6. The worker stalls: events wait, the latency jumps. The drop can trip the
            # latency series too (few events, another p99); that anomaly's cooldown would
            # swallow the stall's, so let it run out first.
            tripped = [
                a["epoch"]
                for a in tail.of("anomaly", after=marks["drop"])
                if a["metric"] == "latency_p99_ms"
            ]
            if tripped:
                time.sleep(max(0.0, max(tripped) + MONITOR.cooldown_s + 2.0 - time.time()))
            pid = worker_processes(topics["events"])[survivor]
            os.kill(pid, signal.SIGSTOP)
            stalled.append(pid)
            marks["stall"] = time.time()
            time.sleep(STALL_S)  # the fault's length, not a synchronisation
            os.kill(pid, signal.SIGCONT)
            stalled.remove(pid)
            marks["resume"] = time.time()
            wait_until(
                survivor_and(
                    lambda: flagged("latency_p99_ms", marks["stall"], {"worker", "fleet"})
                ),
                "the worker's and the fleet's anomaly on the stalled worker's latency",
                diagnose,
                timeout_s=45,
            )

            # 7. The traffic stops: zero workers once idle for the window.
            marks["stop"] = traffic.set_rate(0.0)
            wait_until(
                lambda: decided(0, marks["stop"]) and not live_workers(),
                "the scale to zero",
                diagnose,
            )

            # 8. New events wake the group up; one worker serves them.
            marks["wake"] = time.time()
            produce(bootstrap, topics["events"], synthetic_payloads(WAKE_EVENTS, WAKE_FIRST_ID))
            marks["woken"] = time.time()
            wait_until(
                lambda: bool(samples_of(workers[-1])), "the woken worker's first sample", diagnose
            )
            # Whether every event got committed is the exactly-once test's to judge; here the
            # scenario only waits while the group makes progress.
            total = BURST + traffic.sent + WAKE_EVENTS
            wait_while_progressing(
                lambda: committed_total(bootstrap, group, topics["events"]), total
            )
    finally:
        for pid in stalled:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        traffic.close()
        probe.close()
        tail.close()
        dump_metrics()  # for a look after the fact: the workers' logs are there too
        (logs / "marks.json").write_bytes(orjson.dumps(marks))
    assert traffic.failed == [], f"the broker refused events {traffic.failed[:5]}"
    events = Counter(
        [f"e-{i}" for i in range(BURST)]
        + traffic.event_ids()
        + [f"e-{WAKE_FIRST_ID + i}" for i in range(WAKE_EVENTS)]
    )
    records = read_to_end(bootstrap, topics["predictions"])
    dropped = 0
    for log in logs.glob("*.log"):
        found = re.findall(r"dropped (\d+) buffered records", log.read_text(errors="replace"))
        dropped += sum(int(n) for n in found)
    return LoopRun(
        metrics=tail,
        marks=marks,
        workers=workers,
        events=events,
        predictions=Counter(orjson.loads(r.value)["event_id"] for r in records),
        buffered_dropped=dropped,
        pool_left=pool.live(),
        processes_left=len(worker_processes(topics["events"])),
        logs=logs,
    )


def test_autoscaler_adds_real_workers_on_lag_and_removes_them_after_the_window(
    loop_run: LoopRun,
) -> None:
    records, marks = loop_run.decisions(), loop_run.marks
    before = [r for r in records if r["epoch"] < marks["burst"]]
    assert before, "no decision before the burst"
    assert all((r["current"], r["desired"]) == (0, 0) for r in before), before

    # Activation on the burst's lag (at most max_step workers at once), then one worker per
    # partition within a few evaluations.
    after_burst = [r for r in records if r["epoch"] >= marks["burst"]]
    first = after_burst[0]
    assert (first["current"], first["metric"]) == (0, "lag"), first
    assert "activation" in first["reason"]
    by_lag = math.ceil(first["value"] / LAG_THRESHOLD)
    assert first["desired"] == min(by_lag, PARTITIONS, POLICY.max_step), first
    peak = next(i for i, r in enumerate(after_burst) if r["desired"] == PARTITIONS)
    assert peak <= 2, f"{PARTITIONS} workers only at decision {peak + 1} after the burst"
    assert max(r["desired"] for r in records) == PARTITIONS

    # Every step down waited for the stabilisation window after the last recommendation of as
    # many workers as it had: down to one worker after the burst, to zero once idle.
    downs = [r for r in after_burst if r["desired"] < r["current"]]
    assert downs, "no scale-down"
    for down in downs:
        high = [
            r for r in records if r["epoch"] < down["epoch"] and r["recommended"] >= down["current"]
        ]
        assert down["epoch"] - high[-1]["epoch"] >= STABILISATION_S - 0.01, (high[-1], down)
    assert any("held at" in r["reason"] for r in after_burst), "no scale-down was held"
    steady = [r for r in records if downs[0]["epoch"] <= r["epoch"] < marks["stop"]]
    at_one = next(i for i, r in enumerate(steady) if r["desired"] == 1)
    assert all(r["desired"] == 1 for r in steady[at_one:]), steady[at_one:]
    zero = next(r for r in downs if r["epoch"] > marks["stop"])
    assert (zero["current"], zero["desired"], zero["metric"]) == (1, 0, "idle"), zero

    # Woken up by the lag of new events, at the first evaluation after they were written.
    woken = next(r for r in records if r["epoch"] > zero["epoch"] and r["desired"] > 0)
    assert woken["epoch"] >= marks["wake"]
    assert woken["epoch"] <= next(r["epoch"] for r in records if r["epoch"] >= marks["woken"])
    assert (woken["current"], woken["desired"], woken["metric"]) == (0, 1, "lag"), woken
    assert "activation" in woken["reason"]

    # The pool's workers were real ones (the scenario saw the burst's three join the consumer
    # group): every one sent samples, with the model it serves.
    samples = loop_run.metrics.of("sample")
    assert {s["source"] for s in samples} == set(loop_run.workers)
    served = [s for s in samples if s["records_in"] > 0]
    assert served
    assert all(s["model"]["name"] == "purchase" for s in served)
    assert (loop_run.pool_left, loop_run.processes_left) == (0, 0), "workers outlived the loop"


def test_monitor_flags_a_drop_and_a_stall_of_real_workers_and_is_quiet_on_steady_traffic(
    loop_run: LoopRun,
) -> None:
    marks, survivor = loop_run.marks, loop_run.survivor
    quiet = [a for a in loop_run.anomalies(after=marks["steady"]) if a["epoch"] < marks["drop"]]
    assert quiet == [], f"anomalies on steady traffic: {quiet}"
    samples = loop_run.metrics.of("sample", source=survivor, after=marks["steady"])
    assert len([s for s in samples if s["epoch"] < marks["drop"]]) >= QUIET_SAMPLES

    def samples_until(anomaly: dict[str, Any], since: float) -> int:
        return sum(1 for s in samples if since < s["epoch"] <= anomaly["epoch"])

    # The drop on the worker's own series. (The fleet's sum still counts the stopped workers'
    # last samples for fleet_max_age_s after the scale-down, a level its window remembers, so
    # the fleet's series may or may not find the drop as surprising; it is not judged here.)
    drop = next(
        a
        for a in loop_run.anomalies("records_in_per_s", after=marks["drop"])
        if a["source"] == survivor
    )
    assert drop["epoch"] < marks["stall"]
    assert drop["direction"] == "low"
    assert drop["value"] < 0.6 * drop["baseline"]["median"]
    assert drop["baseline"]["median"] > 0.8 * STEADY_RATE
    assert drop["monitor"] == MONITOR.source
    assert samples_until(drop, marks["drop"]) <= 3, drop

    spikes = [
        a
        for a in loop_run.anomalies("latency_p99_ms", after=marks["stall"])
        if a["epoch"] < marks["stop"]
    ]
    assert {(a["scope"], a["source"]) for a in spikes} == {("worker", survivor), ("fleet", "all")}
    for spike in spikes:
        assert spike["direction"] == "high"
        # Events produced as the stall began waited all of it.
        assert spike["value"] >= 0.8 * STALL_S * 1000
        assert spike["value"] > 4 * spike["baseline"]["median"]
        assert spike["window"]["values"][-1] == spike["value"]
        assert samples_until(spike, marks["resume"]) <= 3, spike


def test_every_event_is_scored_once_through_the_scaling(loop_run: LoopRun) -> None:
    predictions, events = loop_run.predictions, loop_run.events
    assert set(predictions) <= set(events), "predictions of events never produced"
    assert max(predictions.values()) == 1, "events scored twice"
    lost = sorted(set(events) - set(predictions))
    assert lost == [], f"{len(lost)} event(s) lost, {lost[:5]} (worker logs in {loop_run.logs})"
