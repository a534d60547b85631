"""Inference worker processes for tests and benchmarks: a run's topics, command line, stop.

The e2e worker tests (``tests/e2e/worker_fixtures.py``) and the fault campaigns
(:mod:`lakecast.testing.faults`) both run ``streaming/inference_worker.py`` processes on
uuid-named topics of their own; these are the pieces they share.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping

from lakecast.config import PROJECT_ROOT, KafkaSettings
from lakecast.kafka.clients import TopicSpec, build_admin, ensure_topics
from lakecast.testing.kafka import kafka_settings

WORKER_SCRIPT = PROJECT_ROOT / "streaming" / "inference_worker.py"


def create_run_topics(cluster: KafkaSettings | str, run: str, partitions: int) -> dict[str, str]:
    """Create ``events``, ``predictions`` (``partitions`` each), ``dlq`` and ``metrics`` (one
    each) named ``<name>-<run>``; the names by role."""
    topics = {name: f"{name}-{run}" for name in ("events", "predictions", "dlq", "metrics")}
    specs = [
        TopicSpec(topics["events"], partitions),
        TopicSpec(topics["predictions"], partitions),
        TopicSpec(topics["dlq"], 1),
        TopicSpec(topics["metrics"], 1),
    ]
    admin = build_admin(kafka_settings(cluster), client_id="lakecast-test-topics")
    try:
        ensure_topics(admin, specs)
    finally:
        admin.close()
    return topics


def worker_options(
    lake: Mapping[str, str], topics: Mapping[str, str], group: str, *, sample_interval_s: int
) -> list[str]:
    """The options of a worker serving ``lake`` (``registry``, ``snapshot``) on ``topics``
    in ``group``, with no /metrics endpoint."""
    return [
        *("--registry", lake["registry"], "--entity-features", lake["snapshot"]),
        *("--topic", topics["events"], "--predictions-topic", topics["predictions"]),
        *("--dlq-topic", topics["dlq"], "--metrics-topic", topics["metrics"]),
        *("--group", group, "--metrics-port", "0", "--sample-interval", str(sample_interval_s)),
    ]


def worker_command(*options: str) -> list[str]:
    """``streaming/inference_worker.py`` with ``options``, on this interpreter."""
    return [sys.executable, str(WORKER_SCRIPT), *options]


def worker_env(
    bootstrap: str, partitions: int, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """This process's environment with the broker and partition count set for a child."""
    return {
        **os.environ,
        "LAKECAST__KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "LAKECAST__KAFKA__PARTITIONS": str(partitions),
        **(overrides or {}),
    }


def stop_processes(processes: Iterable[subprocess.Popen[bytes]], timeout_s: float = 60.0) -> None:
    """SIGTERM every live process, then wait for each; one still running after ``timeout_s``
    is killed."""
    started = list(processes)
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in started:
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
