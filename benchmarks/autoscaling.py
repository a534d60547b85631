"""Autoscaling policies against a load trace, with real workers: latency above target vs
worker-seconds.

The short real-worker confirmation of ``benchmarks/autoscaling_sim.py`` (which compares the
same policies over days of load in seconds): a daily curve compressed into a short "day"
(night, noon, night), played for ``--days`` days with a spike just after noon of the last, is
replayed into a fresh set of topics once per policy (:mod:`autoscaling_policies`), through real
inference worker processes (``lakecast stream worker``) against one broker. One worker's
capacity is measured first (a pre-filled topic, one worker) and the trace is scaled from it so
that its spike needs ``--peak-workers`` workers; the simulator then plays the same trace with
that capacity, so the two rankings are printed side by side.

End-to-end latency of an event is the ``latency_ms`` its prediction carries (the event record's
Kafka timestamp to the prediction), read back with ``read_committed`` and bucketed by the second
of the trace in which the event was produced. A second is *above target* when the p99 of its
events exceeds the target, or when one of its events was never served. Worker-seconds is the
integral of the live worker processes (counted every second from the process table) from the
start of the trace until its last event is committed, so a policy that leaves a backlog pays
for draining it. On a machine shared with other jobs the producer may not keep the trace's pace
(``played s`` longer than the trace): the figures are then those of a slower trace.

    nice -n 10 .venv/bin/python benchmarks/autoscaling.py             # local broker, ~10 minutes
    .venv/bin/python benchmarks/autoscaling.py --bootstrap host:9092 --base-rate 3000
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from autoscaling_policies import Setup, Windows, predictive_section, setups
from autoscaling_rig import (
    WARMUP_EVENTS,
    Bench,
    WorkerCounter,
    broker,
    live_workers,
    one_worker_rate,
    served_model,
    show_worker_logs,
    wait_ready,
)
from autoscaling_traces import Trace, daily_trace, peak_rate

from lakecast.autoscaling.decision import ScalingDecision
from lakecast.autoscaling.service import AutoscalerService
from lakecast.autoscaling.simulate import (
    SimOutcome,
    WorkerModel,
    load_worker_model,
    simulate,
)
from lakecast.data.replay import replay
from lakecast.demo.fleet import DemoTopics
from lakecast.kafka.clients import build_producer
from lakecast.testing.events import event_payload
from lakecast.testing.kafka import read_committed

FIRST_EVENT = 1_000_000  # trace events are e-1000000...; warm-up and calibration use lower ids
SETTLE_EVENT = 100_000  # ids of the night traffic sent while an autoscaler settles
WINDOWS = Windows(evaluation_s=3.0, stabilisation_s=20.0, max_step=2)


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
    simulated: SimOutcome | None = None

    def with_simulated(self, simulated: SimOutcome) -> Outcome:
        return replace(self, simulated=simulated)


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


def print_table(
    outcomes: list[Outcome], target_ms: float, seconds: int, out: Callable[[str], None] = print
) -> None:
    head = (
        f"{'policy':<20}{'s above ' + format(target_ms, 'g') + ' ms':>16}{'worker-s':>15}"
        f"{'changes':>9}{'max workers':>13}{'served':>10}{'p99 ms':>9}{'played s':>10}"
        f"{'sim above':>11}{'sim worker-s':>15}{'sim changes':>13}"
    )
    out(f"\n{head}\n{'-' * len(head)}")
    fixed = next((o.worker_seconds for o in outcomes if o.name.startswith("fixed")), None)
    sim_fixed = next(
        (
            o.simulated.worker_seconds
            for o in outcomes
            if o.name.startswith("fixed") and o.simulated
        ),
        None,
    )
    for o in outcomes:
        share = f" ({o.worker_seconds / fixed:.0%})" if fixed else ""
        sim = o.simulated
        sim_text = (
            f"{sim.seconds_above:>11}"
            f"{f'{sim.worker_seconds:,.0f} ({sim.worker_seconds / sim_fixed:.0%})':>15}"
            f"{sim.actions:>13}"
            if sim and sim_fixed
            else ""
        )
        out(
            f"{o.name:<20}{f'{o.seconds_above} / {seconds}':>16}"
            f"{f'{o.worker_seconds:,.0f}{share}':>15}{len(o.decisions):>9}"
            f"{o.max_workers:>13}{o.served:>10,}{o.p99_ms:>9,.0f}{o.played_s:>10.0f}{sim_text}"
        )


def run_all(args: argparse.Namespace, bench: Bench, out: Callable[[str], None]) -> list[Outcome]:
    """Calibrate (unless given a base rate), then run the trace under each setup."""
    one = None
    if args.base_rate is None:
        one = one_worker_rate(bench, args.calibration_events)
        out(f"one worker serves {one:,.0f} events/s from a backlog (no other load)")
    capacity = one or args.base_rate * args.spike_factor / (0.9 * args.peak_workers)
    trace = real_trace(args, capacity)
    lag_threshold = args.lag_threshold or round(capacity / 2)
    measured = load_worker_model()
    section = predictive_section(
        capacity,
        season_s=args.seconds,
        # the simulator's tuned horizon is for days of 288 s; a day here is --seconds long
        horizon_s=measured.startup_s + 2 * WINDOWS.evaluation_s,
        step_s=WINDOWS.evaluation_s,
        level_window_s=10.0,
        seasons=1,
    )
    out(f"trace: {trace.describe()}")
    out(f"       {trace.sparkline()}")
    chosen = [
        s
        for s in setups(args.peak_workers, lag_threshold, windows=WINDOWS, predictive=section)
        if not args.only or any(o in s.name for o in args.only)
    ]
    out("policies:")
    for setup in chosen:
        out(f"  {setup.name:<18} {setup.describe()}")
    workers = WorkerModel(capacity, measured.startup_s, measured.rebalance_pause_s,
                          measured.cpu_percent_at_capacity)  # fmt: skip
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
    simulated = [simulated_outcome(s, trace, workers, args.target_ms) for s in chosen]
    return [o.with_simulated(s) for o, s in zip(outcomes, simulated, strict=True)]


def real_trace(args: argparse.Namespace, capacity: float) -> Trace:
    """The daily trace, its spike at ``--peak-workers`` workers' capacity unless given a rate."""
    day = daily_trace(
        1.0,
        args.seconds,
        day_factor=args.day_factor,
        spike_factor=args.spike_factor,
        spike_s=args.spike_seconds,
        days=args.days,
    )
    if args.base_rate is not None:
        return day.scaled(args.base_rate * args.spike_factor)
    return day.scaled(peak_rate(capacity, args.peak_workers))


def simulated_outcome(setup: Setup, trace: Trace, workers: WorkerModel, target_ms: float):
    return simulate(
        trace.rates,
        workers,
        policy=setup.policy,
        fixed=setup.fixed if setup.policy is None else None,
        target_latency_s=target_ms / 1000,
    )


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> list[Outcome]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bootstrap", help="an existing cluster; default: a local broker")
    parser.add_argument("--seconds", type=int, default=40, help="one day of the trace, s")
    parser.add_argument("--days", type=int, default=2, help="days; the spike is on the last")
    parser.add_argument("--base-rate", type=float, help="night rate, events/s (default: measured)")
    parser.add_argument("--day-factor", type=float, default=2.0, help="noon / night rate")
    parser.add_argument("--spike-factor", type=float, default=5.0, help="spike / night rate")
    parser.add_argument("--spike-seconds", type=int, default=10)
    parser.add_argument("--peak-workers", type=int, default=3, help="fixed fleet, max replicas")
    parser.add_argument("--lag-threshold", type=float, help="per replica (default: 0.5 s of work)")
    parser.add_argument("--target-ms", type=float, default=1000.0, help="p99 latency target")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--drain-seconds", type=float, default=45.0, help="after the trace")
    parser.add_argument("--calibration-events", type=int, default=100_000)
    parser.add_argument("--settle-seconds", type=float, default=30.0, help="at most, before")
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
    print_table(outcomes, args.target_ms, args.seconds * args.days, out)
    out(
        "\nlatency: event record timestamp -> prediction, p99 per second of produce time; a "
        "second with an unserved event counts as above. worker-s: live worker processes "
        "integrated from the trace start to its last commit (the window). sim: the simulator "
        "on the same trace with the capacity measured here."
    )
    return outcomes


if __name__ == "__main__":
    main()
