"""Inference worker processes for tests and benchmarks: a run's topics, options, command line.

The e2e worker tests (``tests/e2e/worker_fixtures.py``) and the fault campaigns
(:mod:`lakecast.testing.faults`) both run ``streaming/inference_worker.py`` processes on
uuid-named topics of their own; these are the pieces they share.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from lakecast.config import PROJECT_ROOT, KafkaSettings
from lakecast.kafka.clients import TopicSpec, build_admin, ensure_topics
from lakecast.serving.worker_config import WorkerOptions, worker_command
from lakecast.testing.kafka import kafka_settings

WORKER_SCRIPT = PROJECT_ROOT / "streaming" / "inference_worker.py"
# How long a test worker may take to finish its batch and leave its group after SIGTERM.
WORKER_STOP_S = 60.0


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
    lake: Mapping[str, str], topics: Mapping[str, str], group: str, *, sample_interval_s: float
) -> WorkerOptions:
    """The options of a worker serving ``lake`` (``registry``, ``snapshot``) on ``topics``
    in ``group``."""
    return WorkerOptions(
        registry=lake["registry"],
        entity_features=lake["snapshot"],
        events_topic=topics["events"],
        predictions_topic=topics["predictions"],
        dlq_topic=topics["dlq"],
        metrics_topic=topics["metrics"],
        group_id=group,
        sample_interval_s=sample_interval_s,
    )


def script_command(options: WorkerOptions, *, processes: int | None = None) -> list[str]:
    """``streaming/inference_worker.py`` with ``options`` and no /metrics endpoint, on this
    interpreter."""
    return worker_command(options, processes=processes, metrics_port=0, script=WORKER_SCRIPT)


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
