"""Measure the autoscaling simulator's worker figures with real workers on a real broker.

One run against a pre-filled topic (so the workers never wait for input):

1. one worker starts at ``t0``: its **start-up time** is ``t0`` to its first prediction
   (process start, imports, model load, group join); its **capacity** is the rate of its
   predictions over the next seconds, and its ``cpu_percent`` at that rate comes from its samples;
2. a second worker starts: the group rebalances and every member stalls; the **rebalance pause**
   is the longest gap between consecutive predictions after the second worker was started (the
   end of that gap, from the second worker's start, is ``second_worker_serving_after_s``);
3. the second worker stops (SIGTERM): the group rebalances again, the second pause.

Predictions are timed by their Kafka record timestamps (the worker's producer clock), read back
with ``read_committed`` at the end, so the measurement does not load the workers it measures.
The figures go to ``conf/autoscale-workers.json`` (``--write``), which
:func:`lakecast.autoscaling.simulate.load_worker_model` reads.

    nice -n 10 .venv/bin/python benchmarks/autoscaling_measure.py --write     # ~2 minutes
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from autoscaling_rig import Bench, broker, served_model, show_worker_logs

from lakecast.autoscaling.simulate import WORKER_MODEL
from lakecast.data.replay import replay
from lakecast.kafka.clients import build_producer
from lakecast.testing.clock import wait_for
from lakecast.testing.events import event_payload
from lakecast.testing.kafka import read_committed


def prefill(bench: Bench, topic: str, events: int) -> float:
    """Produce ``events`` as fast as one producer goes; returns its rate (events/s)."""
    producer = build_producer(bench.kafka, mode="at_least_once", client_id="measure-prefill")
    try:
        result = replay(producer, topic, (event_payload(i) for i in range(events)))
    finally:
        producer.close()
    return result.rate


def longest_gap(stamps: list[float], after: float, before: float) -> tuple[float, float]:
    """The (start, end) of the longest gap between consecutive stamps within [after, before]."""
    inside = [s for s in stamps if after <= s <= before]
    points = [after, *inside]
    best = (after, after)
    for a, b in itertools.pairwise(points):
        if b - a > best[1] - best[0]:
            best = (a, b)
    return best


def rate_between(stamps: list[float], start: float, end: float) -> float:
    count = sum(1 for s in stamps if start <= s < end)
    return count / (end - start) if end > start else 0.0


def measure(bench: Bench, events: int, solo_s: float, pair_s: float, out: Callable[[str], None]):
    topics = bench.topics()
    produced = prefill(bench, topics.events, events)
    out(f"pre-filled {events:,} events at {produced:,.0f} events/s (one kafka-python producer)")
    pool = bench.pool(topics)
    try:
        t0 = time.time()
        pool.scale_to(1)
        wait_for(lambda: bench.committed(topics) > 0, timeout_s=180, what="the first commit")
        time.sleep(solo_s)
        t1 = time.time()
        pool.scale_to(2)
        time.sleep(pair_s)
        t2 = time.time()
        pool.scale_to(1)
        time.sleep(solo_s)
        t3 = time.time()
        backlog_left = events - bench.committed(topics)
    finally:
        pool.stop_all()
    records = read_committed(
        bench.bootstrap, topics.predictions, at_least=events - max(backlog_left, 0), quiet_s=2.0
    )
    stamps = sorted(r.timestamp / 1000 for r in records)
    samples = [
        v
        for v in (orjson.loads(r.value) for r in read_committed(
            bench.bootstrap, topics.metrics, at_least=0, quiet_s=1.0))
        if v.get("kind") == "sample"
    ]  # fmt: skip
    if not stamps or stamps[-1] < t2:
        msg = f"the backlog ran out before the measurement ended: raise --events above {events}"
        raise RuntimeError(msg)
    first = stamps[0]
    startup = first - t0
    solo_rate = rate_between(stamps, first + 1.0, t1)
    join = longest_gap(stamps, t1, t2)
    pair_rate = rate_between(stamps, join[1] + 1.0, t2)
    leave = longest_gap(stamps, t2, t3)
    cpus = [
        float(s["cpu_percent"])
        for s in samples
        if s.get("cpu_percent") is not None and first + 2 <= _epoch(s["ts"]) <= t1
    ]
    figures = {
        "capacity_per_worker": round(solo_rate),
        "startup_s": round(startup, 2),
        "second_worker_serving_after_s": round(join[1] - t1, 2),
        "rebalance_pause_s": round(max(join[1] - join[0], leave[1] - leave[0]), 2),
        "rebalance_pause_join_s": round(join[1] - join[0], 2),
        "rebalance_pause_leave_s": round(leave[1] - leave[0], 2),
        "two_workers_per_s": round(pair_rate),
        "cpu_percent_at_capacity": round(statistics.median(cpus), 1) if cpus else None,
    }
    return figures


def _epoch(ts: object) -> float:
    if isinstance(ts, int | float):
        return float(ts)
    return datetime.fromisoformat(str(ts).replace("Z", "+00:00")).timestamp()


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> dict:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bootstrap", help="an existing cluster; default: a local broker")
    parser.add_argument("--events", type=int, default=900_000, help="pre-filled backlog")
    parser.add_argument("--solo-seconds", type=float, default=10.0)
    parser.add_argument("--pair-seconds", type=float, default=20.0)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--write", action="store_true", help=f"write {WORKER_MODEL}")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lakecast-measure-") as tmp:
        root = Path(tmp)
        registry, snapshot = served_model(root)
        with broker(args.bootstrap) as bootstrap:
            bench = Bench(bootstrap, registry, snapshot, root / "logs", args.partitions)
            try:
                figures = measure(bench, args.events, args.solo_seconds, args.pair_seconds, out)
            except Exception:
                show_worker_logs(bench.log_dir, out)
                raise
    for name, value in figures.items():
        out(f"  {name:<26} {value}")
    if args.write:
        document = {
            **figures,
            "measured": datetime.now(tz=UTC).isoformat(timespec="seconds"),
            "how": (__doc__ or "").split("\n\n")[1].strip(),
            "machine": "2 cores shared with other jobs: figures are noisy",
        }
        WORKER_MODEL.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        out(f"wrote {WORKER_MODEL}")
    return figures


if __name__ == "__main__":
    main()
