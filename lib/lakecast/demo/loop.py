"""The monitoring loop live: a replay with a spike, the monitor and the autoscaler acting.

Steady traffic, then a burst far above what one worker serves, then steady again. The
monitor writes ``kind=anomaly`` records, the autoscaler ``kind=scaling`` records and starts
real worker processes; both are read back from the metrics topic and printed.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from lakecast.config import PROJECT_ROOT, Settings
from lakecast.data.replay import event_payloads, read_events, replay
from lakecast.demo.fleet import DemoTopics, decode_values, worker_command
from lakecast.kafka.clients import build_producer
from lakecast.serving.testing import read_committed


@dataclass(frozen=True)
class Phase:
    name: str
    rate: float | None  # None: as fast as the producer goes
    events: int


DEFAULT_PHASES = (
    Phase("steady", 150.0, 4_500),
    Phase("spike", None, 30_000),
    Phase("steady", 150.0, 9_000),
)


def _service(name: str, topics: DemoTopics, log_dir: Path, *args: str) -> subprocess.Popen[bytes]:
    log = (log_dir / f"{name}-{topics.run}.log").open("wb")
    command = [sys.executable, "-m", "lakecast.cli.main", "stream", name, *args]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen[bytes], timeout_s: float = 40.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_loop_demo(
    settings: Settings,
    *,
    day: date | None,
    log_dir: Path,
    phases: tuple[Phase, ...] = DEFAULT_PHASES,
    policy: Path = PROJECT_ROOT / "conf" / "autoscale-demo.json",
) -> dict[str, list[dict[str, Any]]]:
    """Run the phases through the loop; return the anomaly and scaling records."""
    log_dir.mkdir(parents=True, exist_ok=True)
    topics = DemoTopics()
    topics.create(settings)
    worker = shlex.join(worker_command(topics, "--metrics-port", "0", "--sample-interval", "2"))
    monitor = _service(
        "monitor", topics, log_dir, "--topic", topics.metrics, "--metrics-port", "0",
        "--detector", "gaussian_tail", "--param", "warmup=8", "--threshold", "0.5",
        "--cooldown", "20", "--fleet-window", "2", "--group", f"demo-{topics.run}-monitor",
    )  # fmt: skip
    autoscaler = _service(
        "autoscaler", topics, log_dir, "--topic", topics.metrics, "--metrics-port", "0",
        "--policy", str(policy), "--group", topics.group, "--input-topic", topics.events,
        "--worker-command", worker, "--worker-log-dir", str(log_dir),
    )  # fmt: skip
    events = read_events(settings.lake.table("events"), day, day)
    payloads = event_payloads(events)
    producer = build_producer(settings.kafka, mode="at_least_once", client_id="demo-loop")
    try:
        time.sleep(10)  # the autoscaler brings the first worker up (min_replicas)
        for phase in phases:
            chunk = [p for p in (next(payloads, None) for _ in range(phase.events)) if p]
            result = replay(producer, topics.events, iter(chunk), rate=phase.rate)
            print(f"  phase {phase.name:<7} {result.events:>7,} events at {result.rate:,.0f}/s")
        time.sleep(45)  # the lag drains, the stabilisation window passes, it scales down
    finally:
        producer.close()
        _stop(autoscaler)
        _stop(monitor)
    records = decode_values(
        read_committed(settings.kafka.bootstrap_servers, topics.metrics, at_least=0)
    )
    return {kind: [r for r in records if r.get("kind") == kind] for kind in ("anomaly", "scaling")}
