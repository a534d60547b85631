"""The monitoring loop live: a replay with a spike, the monitor and the autoscaler acting.

Steady traffic, then a burst far above what one worker serves, then steady again. The
monitor writes ``kind=anomaly`` records, the autoscaler ``kind=scaling`` records and starts
real worker processes; both are read back from the metrics topic and printed.

The load is sized from one worker's measured capacity (``capacity_per_worker`` in
``conf/autoscale-workers.json``, measured by ``benchmarks/autoscaling_measure.py``): a worker
serves some 10,000 events/s, so a spike of a fixed 30,000 events was drained by one worker in
about a second, between two evaluations, and the autoscaler never changed the fleet. Now the
steady phases run at 10 % of a worker and the spike is 25 s of one worker's work, sent as fast
as the producer goes for at most 20 s (on a busy host the producer is slower than a worker, and
the spike is then what it sent in 20 s); the day's events are replayed in a loop when the
phases need more. The step waits until the fleet is back at its size before the spike (the
stabilisation window passes once per step down) instead of a fixed time.
"""

from __future__ import annotations

import itertools
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from lakecast.autoscaling.simulate import WORKER_MODEL, load_worker_model
from lakecast.config import PROJECT_ROOT, Settings
from lakecast.data.replay import event_payloads, read_events, replay
from lakecast.demo.fleet import DemoTopics, decode_values
from lakecast.kafka.clients import build_producer
from lakecast.kafka.groups import wait_for_stable_members
from lakecast.kafka.readback import read_topic
from lakecast.local.state import open_log, private_dir
from lakecast.local.stopping import stop_processes
from lakecast.serving.worker_config import worker_command


@dataclass(frozen=True)
class Phase:
    name: str
    rate: float | None  # None: as fast as the producer goes
    events: int
    most_s: float | None = None  # stop early after this long (a slow producer on a busy host)


# Of one worker's capacity: one worker, far under the scale-down target, and little enough in
# flight that the lag stays under the demo policy's lag_threshold (500) between batches.
STEADY_SHARE = 0.1
STEADY_S = (40.0, 30.0)  # before (the monitor's detectors warm up: 8 samples of 2 s) and after
SPIKE_WORK_S = 25.0  # the spike holds this many seconds of one worker's work
SPIKE_MOST_S = 20.0
SCALE_DOWN_WAIT_S = 180.0  # the longest wait for the fleet to be back after the last phase
# The autoscaler stops its own workers before it exits: the longest a service may take.
STOP_TIMEOUT_S = 40.0


def sized_phases(capacity: float) -> tuple[Phase, ...]:
    """Steady, spike, steady for workers of ``capacity`` events/s each."""
    if capacity <= 0:
        msg = f"demo loop: a worker's capacity must be positive, got {capacity}"
        raise ValueError(msg)
    steady = STEADY_SHARE * capacity
    return (
        Phase("steady", steady, round(steady * STEADY_S[0])),
        Phase("spike", None, round(capacity * SPIKE_WORK_S), SPIKE_MOST_S),
        Phase("steady", steady, round(steady * STEADY_S[1])),
    )


def _service(name: str, topics: DemoTopics, log_dir: Path, *args: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "lakecast.cli.main", "stream", name, *args]
    with open_log(log_dir / f"{name}-{topics.run}.log") as log:  # a restart appends to it
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def _play(
    producer: Any, topic: str, payloads: Iterator[tuple[bytes | None, bytes]], phase: Phase
) -> tuple[int, float]:
    """Send the phase's events, in chunks of a second or less; (events sent, seconds)."""
    began = time.monotonic()
    chunk_size = max(round(phase.rate), 1) if phase.rate else 2_000
    sent = 0
    while sent < phase.events:
        elapsed = time.monotonic() - began
        if phase.most_s is not None and elapsed >= phase.most_s:
            break
        if phase.rate:
            # Pace by the schedule: event i is due at i / rate seconds into the phase.
            time.sleep(max(sent / phase.rate - elapsed, 0.0))
        chunk = list(itertools.islice(payloads, min(chunk_size, phase.events - sent)))
        sent += replay(producer, topic, iter(chunk), rate=phase.rate).events
    producer.flush()
    return sent, max(time.monotonic() - began, 1e-9)


def _wait_for_scale_down(settings: Settings, topics: DemoTopics, timeout_s: float) -> None:
    """Until the fleet is back at its size before the first scale-up, or ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(5)
        records = decode_values(read_topic(settings.kafka, topics.metrics))
        changes = [
            r
            for r in records
            if r.get("kind") == "scaling" and r.get("current") != r.get("desired")
        ]
        ups = [r for r in changes if r.get("direction") == "up"]
        if ups and changes[-1].get("direction") == "down":
            before = ups[0].get("current")
            if isinstance(before, int) and changes[-1].get("desired") == max(before, 1):
                return


def run_loop_demo(
    settings: Settings,
    *,
    day: date | None,
    log_dir: Path,
    phases: tuple[Phase, ...] | None = None,
    policy: Path = PROJECT_ROOT / "conf" / "autoscale-demo.json",
    workers: Path = WORKER_MODEL,
) -> dict[str, list[dict[str, Any]]]:
    """Run the phases through the loop; return the anomaly and scaling records.

    Args:
        phases: the load; default: :func:`sized_phases` of the measured capacity in ``workers``.
    """
    private_dir(log_dir)
    if phases is None:
        capacity = load_worker_model(workers).capacity
        phases = sized_phases(capacity)
        print(f"  one worker serves ~{capacity:,.0f} events/s ({workers.name}): load sized from it")
    topics = DemoTopics()
    topics.create(settings)
    options = topics.worker_options().model_copy(update={"sample_interval_s": 2})
    worker = shlex.join(worker_command(options, metrics_port=0))
    monitor = _service(
        "monitor", topics, log_dir,
        "--topic", topics.metrics, "--metrics-port", "0",
        "--detector", "gaussian_tail", "--param", "warmup=8", "--threshold", "0.5",
        "--cooldown", "20", "--fleet-window", "2", "--group", f"demo-{topics.run}-monitor",
    )  # fmt: skip
    autoscaler = _service(
        "autoscaler", topics, log_dir, "--topic", topics.metrics, "--metrics-port", "0",
        "--policy", str(policy), "--group", topics.group, "--input-topic", topics.events,
        "--worker-command", worker, "--worker-log-dir", str(log_dir),
    )  # fmt: skip
    events = read_events(settings.lake.table("events"), day, day)
    # A day of the demo lake holds fewer events than the load needs: replay it in a loop.
    payloads = itertools.cycle(list(event_payloads(events)))
    producer = build_producer(settings.kafka, mode="at_least_once", client_id="demo-loop")
    try:
        # The autoscaler brings the first worker up (min_replicas): traffic sent before it has
        # joined would wait in the topic as lag and scale the fleet up before the spike.
        wait_for_stable_members(settings.kafka.bootstrap_servers, topics.group, 1)
        for phase in phases:
            sent, began = _play(producer, topics.events, payloads, phase)
            print(f"  phase {phase.name:<7} {sent:>7,} events at {sent / began:,.0f}/s")
        # The lag drains, the anomaly hold and the stabilisation window pass, it scales down.
        _wait_for_scale_down(settings, topics, SCALE_DOWN_WAIT_S)
    finally:
        producer.close()
        stop_processes([autoscaler, monitor], STOP_TIMEOUT_S)
    records = decode_values(read_topic(settings.kafka, topics.metrics))
    return {kind: [r for r in records if r.get("kind") == kind] for kind in ("anomaly", "scaling")}
