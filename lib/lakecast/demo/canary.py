"""A canary of the challenger against the champion, on live workers, verdict by verdict."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import date
from pathlib import Path

from lakecast.config import PROJECT_ROOT, Settings
from lakecast.data.replay import event_payloads, read_events, replay
from lakecast.demo.fleet import DemoTopics, WorkerFleet
from lakecast.kafka.clients import build_producer
from lakecast.registry import Registry


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lakecast.cli.main", *args]


def run_canary_demo(
    settings: Settings,
    *,
    model: str,
    day: date | None,
    rate: float,
    steps: str,
    step_seconds: float,
    log_dir: Path,
) -> int:
    """Serve replayed traffic with two workers while `lakecast deploy --wait` runs a canary.

    Returns the exit status of the deploy command (0: it ran to a verdict).
    """
    registry = Registry(settings.registry_root)
    challenger = registry.resolve(f"{model}@challenger")
    topics = DemoTopics()
    topics.create(settings)
    fleet = WorkerFleet(topics, 2, log_dir)
    events = read_events(settings.lake.table("events"), day, day)
    stop = threading.Event()

    def traffic() -> None:
        producer = build_producer(settings.kafka, mode="at_least_once", client_id="demo-canary")
        payloads = event_payloads(events)
        while not stop.is_set():
            chunk = [next(payloads, None) for _ in range(int(rate))]
            batch = [p for p in chunk if p is not None]
            if not batch:
                payloads = event_payloads(events)
                continue
            replay(producer, topics.events, iter(batch), rate=rate)
        producer.close()

    fleet.start()
    sender = threading.Thread(target=traffic, name="demo-traffic", daemon=True)
    try:
        fleet.wait_ready(settings.kafka.bootstrap_servers)
        sender.start()
        deploy = _cli(
            "deploy", "--metrics-topic", topics.metrics, "start", model, challenger.version,
            "--rules", str(PROJECT_ROOT / "conf" / "rollouts" / "demo-canary.yaml"),
            "--strategy", "canary", "--steps", steps, "--step-seconds", str(step_seconds),
            "--replace", "--wait", "--timeout", "600",
            "--reason", "make demo: canary of the Keras challenger",
        )  # fmt: skip
        status = subprocess.run(deploy, check=False).returncode
        subprocess.run(_cli("deploy", "status", model), check=False)
    finally:
        stop.set()
        if sender.is_alive():
            sender.join(timeout=30)
        fleet.stop()
    return status
