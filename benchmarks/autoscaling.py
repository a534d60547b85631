"""Autoscaling policies against a load trace: latency above target vs worker-seconds.

A daily curve compressed into a minute or two (night, noon, night) with a spike well above
what one worker serves is replayed into a fresh set of topics once per policy, through real
inference worker processes (``lakecast stream worker``) against one broker:

* **fixed at the peak**: N workers for the whole trace, no autoscaler;
* **CPU only**: the autoscaler on ``CPUUtilization`` (the consumer-lag rule is neutralised by a
  lag threshold no backlog reaches);
* **CPU + lag**: the same CPU policy plus KEDA's lag rule (``ceil(total_lag / lag_threshold)``).

End-to-end latency of an event is the ``latency_ms`` its prediction carries (the event record's
Kafka timestamp to the prediction), read back with ``read_committed`` and bucketed by the second
of the trace in which the event was produced. A second is *above target* when the p99 of its
events exceeds the target, or when one of its events was never served. Worker-seconds is the
integral of the live worker processes (counted every second from the process table) from the
start of the trace until its last event is committed, so a policy that leaves a backlog pays
for draining it. One worker's maximum rate is measured first (a pre-filled topic, one worker)
and the trace's rates are fractions of it, unless ``--base-rate`` is given.

    nice -n 10 .venv/bin/python benchmarks/autoscaling.py             # local broker, ~7 minutes
    .venv/bin/python benchmarks/autoscaling.py --bootstrap host:9092 --base-rate 300 --seconds 120
"""

from __future__ import annotations

import argparse
import itertools
import math
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psutil

from lakecast.autoscaling.decision import ScalingDecision
from lakecast.autoscaling.policy import AutoscalePolicy, parse_policy
from lakecast.autoscaling.pool import WorkerPool
from lakecast.autoscaling.service import AutoscalerService
from lakecast.config import KafkaSettings, settings
from lakecast.data.replay import replay
from lakecast.demo.fleet import DemoTopics, worker_command
from lakecast.kafka.clients import TopicSpec, build_admin, build_producer, ensure_topics
from lakecast.serving.testing import (
    committed_total,
    event_payload,
    read_committed,
    register_model,
    wait_for,
    write_snapshot,
)

FIRST_EVENT = 1_000_000  # trace events are e-1000000...; warm-up and calibration use lower ids
WARMUP_EVENTS = 60
SETTLE_EVENT = 100_000  # ids of the night traffic sent while an autoscaler settles
SAMPLE_INTERVAL_S = 2


# ---- the trace ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Trace:
    """Events per second for each second of the replay."""

    rates: tuple[float, ...]
    spike: tuple[int, int]  # [start, end) seconds

    @property
    def events(self) -> int:
        return sum(self.counts())

    def counts(self) -> list[int]:
        return [round(r) for r in self.rates]

    def describe(self) -> str:
        low, high = min(self.rates), max(self.rates)
        day = max(r for t, r in enumerate(self.rates) if not self.spike[0] <= t < self.spike[1])
        return (
            f"{len(self.rates)} s, {self.events:,} events: daily curve {low:,.0f} -> {day:,.0f} "
            f"-> {low:,.0f} events/s, spike {high:,.0f} events/s over "
            f"[{self.spike[0]}, {self.spike[1]}) s"
        )

    def sparkline(self, width: int = 60) -> str:
        bars = " ▁▂▃▄▅▆▇█"
        step = max(1, math.ceil(len(self.rates) / width))
        top = max(self.rates)
        cells = [max(self.rates[i : i + step]) for i in range(0, len(self.rates), step)]
        return "".join(bars[min(8, round(8 * c / top))] for c in cells)


def daily_trace(
    base: float, seconds: int, *, day_factor: float, spike_factor: float, spike_s: int
) -> Trace:
    """``base`` at night, ``day_factor * base`` at noon (a raised cosine), then a spike.

    The spike (``spike_factor * base`` for ``spike_s`` seconds) starts just after noon, when the
    fleet is already at its daytime size, as a flash sale would.
    """
    start = min(int(seconds * 0.55), max(seconds - spike_s, 0))
    rates = []
    for t in range(seconds):
        curve = (1 - math.cos(2 * math.pi * t / seconds)) / 2
        rate = base * (1 + (day_factor - 1) * curve)
        if start <= t < start + spike_s:
            rate = base * spike_factor
        rates.append(rate)
    return Trace(tuple(rates), (start, start + spike_s))


# ---- the policies ------------------------------------------------------------------------

NO_LAG_THRESHOLD = 1e12  # no backlog reaches it: the lag rule never recommends more than one


def policy_document(*, lag_threshold: float, max_replicas: int) -> dict[str, Any]:
    """The benchmark's policy: ``conf/autoscale-demo.json`` with windows sized for a short trace."""
    return {
        "scale_up_policy": {
            "metric_type": "CPUUtilization",
            "target_value": 70,
            "action": {"type": "proportional"},
        },
        "scale_down_policy": {
            "metric_type": "CPUUtilization",
            "target_value": 30,
            "action": {"type": "step", "adjustment": -1},
        },
        "consumer_lag": {
            "lag_threshold": lag_threshold,
            "activation_lag_threshold": 10,
            "cap_at_partitions": True,
        },
        "min_replicas": 1,
        "max_replicas": max_replicas,
        "max_step": 2,
        "tolerance": 0.1,
        "windows": {
            "evaluation_interval_s": 3,
            "scale_down_stabilization_s": 20,
            "sample_max_age_s": 3 * SAMPLE_INTERVAL_S,
        },
        # No monitor runs in the benchmark, so no anomaly would ever hold a scale-down.
        "anomalies": {"hold_s": 0, "metrics": []},
    }


@dataclass(frozen=True)
class Setup:
    """One line of the table: a fixed fleet (``policy`` None) or an autoscaling policy."""

    name: str
    policy: AutoscalePolicy | None
    fixed: int = 0

    def describe(self) -> str:
        if self.policy is None:
            return f"{self.fixed} workers for the whole trace, no autoscaler"
        p = self.policy
        lag = p.consumer_lag
        lag_text = (
            "lag rule off"
            if lag is None or lag.lag_threshold >= NO_LAG_THRESHOLD
            else f"lag_threshold {lag.lag_threshold:g}/replica"
        )
        return (
            f"CPU up {p.scale_up_policy.target_value:g} % / down "
            f"{p.scale_down_policy.target_value:g} %, {lag_text}, replicas "
            f"{p.min_replicas}..{p.max_replicas}, step <= {p.max_step}, every "
            f"{p.windows.evaluation_interval_s:g} s, scale-down window "
            f"{p.windows.scale_down_stabilization_s:g} s"
        )


def setups(peak_workers: int, lag_threshold: float) -> list[Setup]:
    cpu = policy_document(lag_threshold=NO_LAG_THRESHOLD, max_replicas=peak_workers)
    both = policy_document(lag_threshold=lag_threshold, max_replicas=peak_workers)
    return [
        Setup("fixed at the peak", None, fixed=peak_workers),
        Setup("CPU only", parse_policy(cpu, "<benchmark: CPU only>")),
        Setup("CPU + lag", parse_policy(both, "<benchmark: CPU + lag>")),
    ]


# ---- the plumbing: broker, model, topics, workers -----------------------------------------


@contextmanager
def broker(bootstrap: str | None) -> Iterator[str]:
    """The given cluster, or a LocalBroker on free ports in a temporary folder."""
    if bootstrap:
        yield bootstrap
        return
    from lakecast.local.broker import LocalBroker
    from lakecast.local.jars import resolve_jars
    from lakecast.local.ports import free_port

    with tempfile.TemporaryDirectory(prefix="lakecast-bench-") as state:
        local = LocalBroker(
            Path(state),
            port=free_port(),
            controller_port=free_port(),
            classpath=resolve_jars(settings()).kafka_classpath,
            heap="1g",
        )
        local.start()
        try:
            yield local.bootstrap_servers
        finally:
            local.stop()


@dataclass(frozen=True)
class Bench:
    """What every run shares: the broker, the served model, the worker logs."""

    bootstrap: str
    registry: str
    snapshot: str
    log_dir: Path
    partitions: int

    @property
    def kafka(self) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=self.bootstrap)

    def topics(self) -> DemoTopics:
        topics = DemoTopics(run=f"as-{uuid.uuid4().hex[:6]}")
        admin = build_admin(self.kafka)
        try:
            ensure_topics(
                admin,
                [
                    TopicSpec(topics.events, self.partitions),
                    TopicSpec(topics.predictions, self.partitions),
                    TopicSpec(topics.dlq, 1),
                    TopicSpec(topics.metrics, 1),
                ],
            )
        finally:
            admin.close()
        return topics

    def pool(self, topics: DemoTopics) -> WorkerPool:
        command = worker_command(
            topics, "--registry", self.registry, "--entity-features", self.snapshot,
            "--model", "purchase@champion", "--metrics-port", "0",
            "--sample-interval", str(SAMPLE_INTERVAL_S),
        )  # fmt: skip
        return WorkerPool(
            command,
            name=f"worker-{topics.run}",
            env={"LAKECAST__KAFKA__BOOTSTRAP_SERVERS": self.bootstrap},
            stop_timeout_s=20.0,
            log_dir=self.log_dir,
        )

    def committed(self, topics: DemoTopics) -> int:
        return committed_total(self.bootstrap, topics.group, topics.events)


def live_workers(topics: DemoTopics) -> int:
    """Worker processes of this run alive now (from the process table, as a host would count)."""
    count = 0
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and topics.events in child.cmdline():
                count += 1
        except psutil.Error:  # it exited while we looked
            continue
    return count


@dataclass
class WorkerCounter:
    """Counts the live workers once a second in a thread; integrates them over a window."""

    topics: DemoTopics
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        def run() -> None:
            while True:
                self.samples.append((time.monotonic(), live_workers(self.topics)))
                if self._stop.wait(1.0):
                    return

        self._thread = threading.Thread(target=run, name="worker-counter", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def worker_seconds(self, start: float, end: float) -> float:
        """Step integral: each count holds until the next one."""
        total = 0.0
        points = [*self.samples, (math.inf, 0)]
        for (t, n), (t_next, _) in itertools.pairwise(points):
            low, high = max(t, start), min(t_next, end)
            if high > low:
                total += n * (high - low)
        return total

    def peak(self, start: float, end: float) -> int:
        return max((n for t, n in self.samples if start <= t <= end), default=0)


def wait_ready(bench: Bench, topics: DemoTopics, workers: int, timeout_s: float = 120) -> None:
    """Until ``workers`` have sent a sample and a few warm-up events were served."""

    def sampled() -> bool:
        records = read_committed(bench.bootstrap, topics.metrics, at_least=0, quiet_s=0.3)
        sources = {
            value.get("source")
            for value in (orjson.loads(r.value) for r in records if r.value)
            if value.get("kind") == "sample"
        }
        return len(sources) >= workers

    wait_for(sampled, timeout_s=timeout_s, what=f"samples from {workers} worker(s)", every_s=1)
    producer = build_producer(bench.kafka, mode="at_least_once", client_id="bench-warmup")
    try:
        replay(producer, topics.events, (event_payload(i) for i in range(WARMUP_EVENTS)))
    finally:
        producer.close()
    wait_for(
        lambda: bench.committed(topics) >= WARMUP_EVENTS,
        timeout_s=timeout_s,
        what="the warm-up events to be served",
        every_s=0.5,
    )


# ---- one worker's capacity --------------------------------------------------------------


def one_worker_rate(bench: Bench, events: int) -> float:
    """Events/s one worker serves from a backlog (first commit to last, join excluded)."""
    topics = bench.topics()
    producer = build_producer(bench.kafka, mode="at_least_once", client_id="bench-calibrate")
    try:
        replay(producer, topics.events, (event_payload(i) for i in range(events)))
    finally:
        producer.close()
    pool = bench.pool(topics)
    pool.scale_to(1)
    try:
        wait_for(lambda: bench.committed(topics) > 0, timeout_s=120, what="the first commit")
        first, began = bench.committed(topics), time.monotonic()
        wait_for(
            lambda: bench.committed(topics) >= events,
            timeout_s=300,
            what=f"one worker to serve {events:,} events",
            every_s=0.1,
        )
        return (events - first) / (time.monotonic() - began)
    finally:
        pool.stop_all()


# ---- one run of the trace under one setup ---------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    name: str
    seconds_above: int
    worker_seconds: float
    max_workers: int
    events: int
    served: int
    p99_ms: float
    window_s: float
    played_s: float
    decisions: list[str]


def play(bench: Bench, topics: DemoTopics, trace: Trace) -> tuple[list[float], float, float]:
    """Replay the trace second by second.

    Returns:
        The monotonic start of each second, the epoch start, the monotonic end (later than
        planned when the producer could not keep the pace on a loaded machine).
    """
    producer = build_producer(bench.kafka, mode="at_least_once", client_id="bench-trace")
    starts = []
    index = FIRST_EVENT
    epoch = time.time()
    began = time.monotonic()
    try:
        for second, (rate, count) in enumerate(zip(trace.rates, trace.counts(), strict=True)):
            delay = began + second - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            starts.append(time.monotonic())
            chunk = [event_payload(i) for i in range(index, index + count)]
            index += count
            replay(producer, topics.events, iter(chunk), rate=rate)
        finished = time.monotonic()
    finally:
        producer.close()
    return starts, epoch, finished


def settle(
    bench: Bench, topics: DemoTopics, workers: int, rate: float, *, least_s: float, most_s: float
) -> int:
    """Night traffic for ``least_s``, then until the autoscaler is back at ``workers``.

    A worker's start-up CPU can scale the fleet up before the trace; the trace must start from
    the night's steady state. Returns the events sent.
    """
    producer = build_producer(bench.kafka, mode="at_least_once", client_id="bench-settle")
    index = SETTLE_EVENT
    began = time.monotonic()

    def settled() -> bool:
        elapsed = time.monotonic() - began
        return elapsed >= most_s or (elapsed >= least_s and live_workers(topics) <= workers)

    try:
        while not settled():
            count = max(round(rate), 1)
            chunk = [event_payload(i) for i in range(index, index + count)]
            index += count
            replay(producer, topics.events, iter(chunk), rate=rate)
    finally:
        producer.close()
    return index - SETTLE_EVENT


def describe_decision(decision: ScalingDecision, epoch: float) -> str:
    value = "" if decision.value is None else f" {decision.value:,.0f}"
    return (
        f"{decision.ts - epoch:+.0f}s {decision.current}->{decision.desired} "
        f"({decision.metric}{value})"
    )


def seconds_above(
    bench: Bench, topics: DemoTopics, trace: Trace, target_ms: float
) -> tuple[int, int, float]:
    """(seconds whose p99 is above target, events served, overall p99 in ms)."""
    records = read_committed(
        bench.bootstrap, topics.predictions, at_least=trace.events, timeout_s=60, quiet_s=2.0
    )
    latency: dict[int, float] = {}
    for record in records:
        value = orjson.loads(record.value)
        number = int(str(value["event_id"]).removeprefix("e-"))
        if number >= FIRST_EVENT:
            latency[number] = float(value["latency_ms"])
    above = 0
    index = FIRST_EVENT
    for count in trace.counts():
        got = [latency[i] for i in range(index, index + count) if i in latency]
        index += count
        if len(got) < count or (got and float(np.percentile(got, 99)) > target_ms):
            above += 1
    values = list(latency.values())
    p99 = float(np.percentile(values, 99)) if values else math.nan
    return above, len(latency), p99


def run_setup(
    bench: Bench, setup: Setup, trace: Trace, *, target_ms: float, drain_s: float, settle_s: float
) -> Outcome:
    topics = bench.topics()
    pool = bench.pool(topics)
    counter = WorkerCounter(topics)
    stop = threading.Event()
    service: AutoscalerService | None = None
    thread: threading.Thread | None = None
    if setup.policy is None:
        pool.scale_to(setup.fixed)
    else:
        service = AutoscalerService(
            bench.kafka,
            topics.metrics,
            setup.policy,
            group=topics.group,
            input_topics=[topics.events],
            pool=pool,
            partitions=bench.partitions,
            group_id=f"{topics.group}-autoscaler",
            from_beginning=True,
            source=f"autoscaler-{topics.run}",
        )
        thread = threading.Thread(target=service.run, args=(stop,), name="autoscaler")
        thread.start()
    counter.start()
    try:
        workers = setup.policy.min_replicas if setup.policy else setup.fixed
        wait_ready(bench, topics, workers)
        settled = 0
        if setup.policy is not None:
            windows = setup.policy.windows
            least = 2 * windows.evaluation_interval_s + windows.sample_max_age_s
            settled = settle(
                bench, topics, workers, trace.rates[0], least_s=least, most_s=max(settle_s, least)
            )
        starts, epoch, finished = play(bench, topics, trace)
        expected = WARMUP_EVENTS + settled + trace.events
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and bench.committed(topics) < expected:
            time.sleep(0.25)
        end = time.monotonic()
    finally:
        stop.set()
        if thread is not None:
            thread.join(120)
        else:
            pool.stop_all()
        counter.stop()
    above, served, p99 = seconds_above(bench, topics, trace, target_ms)
    return Outcome(
        name=setup.name,
        seconds_above=above,
        worker_seconds=counter.worker_seconds(starts[0], end),
        max_workers=counter.peak(starts[0], end),
        events=trace.events,
        served=served,
        p99_ms=p99,
        window_s=end - starts[0],
        played_s=finished - starts[0],
        decisions=[
            describe_decision(d, epoch) for d in (service.decisions if service else ()) if d.changed
        ],
    )


# ---- main ---------------------------------------------------------------------------------


def served_model(root: Path) -> tuple[str, str]:
    registry, snapshot = str(root / "registry"), str(root / "entity_features")
    register_model(registry)
    write_snapshot(snapshot)
    return registry, snapshot


def print_table(
    outcomes: list[Outcome], target_ms: float, seconds: int, out: Callable[[str], None] = print
) -> None:
    head = (
        f"{'policy':<20}{'s above ' + format(target_ms, 'g') + ' ms':>16}{'worker-s':>11}"
        f"{'max workers':>13}{'events':>10}{'served':>10}{'p99 ms':>10}{'played s':>10}"
        f"{'window s':>10}{'changes':>9}"
    )
    out(f"\n{head}\n{'-' * len(head)}")
    for o in outcomes:
        out(
            f"{o.name:<20}{f'{o.seconds_above} / {seconds}':>16}{o.worker_seconds:>11.0f}"
            f"{o.max_workers:>13}{o.events:>10,}{o.served:>10,}{o.p99_ms:>10,.0f}"
            f"{o.played_s:>10.0f}{o.window_s:>10.0f}{len(o.decisions):>9}"
        )


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> list[Outcome]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bootstrap", help="an existing cluster; default: a local broker")
    parser.add_argument("--seconds", type=int, default=80, help="trace length, s")
    parser.add_argument("--base-rate", type=float, help="night rate, events/s (default: measured)")
    parser.add_argument("--base-fraction", type=float, default=0.25, help="of one worker's max")
    parser.add_argument("--day-factor", type=float, default=2.0, help="noon / night rate")
    parser.add_argument("--spike-factor", type=float, default=5.0, help="spike / night rate")
    parser.add_argument("--spike-seconds", type=int, default=15)
    parser.add_argument("--peak-workers", type=int, default=3, help="fixed fleet, max replicas")
    parser.add_argument("--lag-threshold", type=float, help="per replica (default: 1 s of work)")
    parser.add_argument("--target-ms", type=float, default=500.0, help="p99 latency target")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--drain-seconds", type=float, default=45.0, help="after the trace")
    parser.add_argument("--calibration-events", type=int, default=8_000)
    parser.add_argument("--settle-seconds", type=float, default=40.0, help="at most, before")
    parser.add_argument("--only", action="append", help="run only setups whose name has this")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="lakecast-bench-autoscaling-") as tmp:
        root = Path(tmp)
        registry, snapshot = served_model(root)
        with broker(args.bootstrap) as bootstrap:
            bench = Bench(bootstrap, registry, snapshot, root / "logs", args.partitions)
            out(f"broker {bootstrap}; worker logs in {bench.log_dir} (removed at the end)")
            try:
                outcomes = run_all(args, bench, out)
            except Exception:
                show_worker_logs(bench.log_dir, out)
                raise
    print_table(outcomes, args.target_ms, args.seconds, out)
    out(
        "\nlatency: event record timestamp -> prediction, p99 per second of produce time; a "
        "second with an unserved event counts as above. worker-s: live worker processes "
        "integrated from the trace start to its last commit (the window)."
    )
    return outcomes


def show_worker_logs(log_dir: Path, out: Callable[[str], None], lines: int = 15) -> None:
    """The end of each worker's log (they are removed with the temporary folder)."""
    for log in sorted(log_dir.glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        out(f"--- {log.name} (last {len(tail)} lines)")
        for line in tail:
            out(f"    {line}")


def run_all(args: argparse.Namespace, bench: Bench, out: Callable[[str], None]) -> list[Outcome]:
    """Calibrate (unless given a base rate), then run the trace under each setup."""
    one = None
    if args.base_rate is None:
        one = one_worker_rate(bench, args.calibration_events)
        out(f"one worker serves {one:,.0f} events/s from a backlog (no other load)")
    base = args.base_rate or args.base_fraction * (one or 0.0)
    lag_threshold = args.lag_threshold or round(one or base * args.spike_factor / 2)
    trace = daily_trace(
        base,
        args.seconds,
        day_factor=args.day_factor,
        spike_factor=args.spike_factor,
        spike_s=args.spike_seconds,
    )
    out(f"trace: {trace.describe()}")
    out(f"       {trace.sparkline()}")
    chosen = [
        s
        for s in setups(args.peak_workers, lag_threshold)
        if not args.only or any(o in s.name for o in args.only)
    ]
    out("policies:")
    for setup in chosen:
        out(f"  {setup.name:<18} {setup.describe()}")
    outcomes = []
    for setup in chosen:
        began = time.monotonic()
        outcome = run_setup(
            bench,
            setup,
            trace,
            target_ms=args.target_ms,
            drain_s=args.drain_seconds,
            settle_s=args.settle_seconds,
        )
        out(f"  ran {setup.name} in {time.monotonic() - began:.0f} s")
        if outcome.decisions:
            out(f"    scaling (from the trace start): {', '.join(outcome.decisions)}")
        outcomes.append(outcome)
    return outcomes


if __name__ == "__main__":
    main()
