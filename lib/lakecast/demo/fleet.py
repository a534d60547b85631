"""Topics of one demo run and the worker processes that serve them."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from lakecast.config import Settings
from lakecast.kafka.clients import TopicSpec, build_admin, ensure_topics
from lakecast.kafka.groups import wait_for_stable_members
from lakecast.local.state import open_log
from lakecast.local.stopping import stop_processes
from lakecast.serving.worker_config import WorkerOptions, worker_command


@dataclass(frozen=True)
class DemoTopics:
    """The four topics of the streaming path, suffixed with the run id."""

    run: str = field(default_factory=lambda: uuid.uuid4().hex[:6])

    @property
    def events(self) -> str:
        return f"demo-{self.run}-events"

    @property
    def predictions(self) -> str:
        return f"demo-{self.run}-predictions"

    @property
    def dlq(self) -> str:
        return f"demo-{self.run}-events.dlq"

    @property
    def metrics(self) -> str:
        return f"demo-{self.run}-metrics"

    @property
    def group(self) -> str:
        return f"demo-{self.run}-inference"

    def create(self, settings: Settings, partitions: int = 4) -> None:
        admin = build_admin(settings.kafka)
        try:
            ensure_topics(
                admin,
                [
                    TopicSpec(self.events, partitions),
                    TopicSpec(self.predictions, partitions),
                    TopicSpec(self.dlq, 1),
                    TopicSpec(self.metrics, 1),
                ],
            )
        finally:
            admin.close()

    def worker_options(self) -> WorkerOptions:
        """A worker's options for these topics and the run's group."""
        return WorkerOptions(
            events_topic=self.events,
            predictions_topic=self.predictions,
            dlq_topic=self.dlq,
            metrics_topic=self.metrics,
            group_id=self.group,
        )


@dataclass
class WorkerFleet:
    """``lakecast stream worker --processes N`` as a child process, its log in a file."""

    topics: DemoTopics
    processes: int
    log_dir: Path
    extra: Iterable[str] = ()
    _child: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        options = self.topics.worker_options().model_copy(update={"sample_interval_s": 2})
        command = worker_command(
            options, processes=self.processes, metrics_port=0, extra_args=list(self.extra)
        )
        # One log per run id (0600, its folder 0700): appending is writing it afresh.
        with open_log(self.log_dir / f"workers-{self.topics.run}.log") as log:
            self._child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, bootstrap: str, timeout_s: float = 120.0) -> None:
        """Until every worker has joined the group and it is Stable (models loaded, partitions
        assigned): traffic sent earlier would wait in the topic and count as latency."""
        wait_for_stable_members(bootstrap, self.topics.group, self.processes, timeout_s=timeout_s)

    def stop(self, timeout_s: float = 30.0) -> None:
        if self._child is not None:
            stop_processes([self._child], timeout_s)


def decode_values(records: Iterable[object]) -> list[dict[str, object]]:
    return [orjson.loads(record.value) for record in records if record.value]  # type: ignore[attr-defined]
