"""Worker processes against a real broker: one test's topics and group, and its processes.

Shared by the e2e worker tests: :class:`Stream` creates uuid-named topics and a group, starts
worker processes (``streaming/inference_worker.py`` or any command line, such as the
``lakecast`` CLI) with the broker in their environment, waits on the group's committed offsets
and reads the committed predictions back. :mod:`lakecast.kafka.groups` says what the
coordinator sees (state and members), which is how a test knows who joined and who left.
"""

from __future__ import annotations

import subprocess
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lakecast.local.stopping import stop_processes
from lakecast.serving.worker_config import WorkerOptions
from lakecast.testing.clock import wait_for
from lakecast.testing.kafka import committed_total, read_committed
from lakecast.testing.workers import (
    WORKER_STOP_S,
    create_run_topics,
    script_command,
    worker_env,
    worker_options,
)

PARTITIONS = 3
TIMEOUT_S = 240.0


class Stream:
    """The topics and group of one test, and the worker processes it starts."""

    def __init__(
        self, bootstrap: str, lake: dict[str, str], logs: Path, *, partitions: int = PARTITIONS
    ) -> None:
        self.bootstrap = bootstrap
        self.lake = lake
        self.logs = logs
        self.partitions = partitions
        run = uuid.uuid4().hex[:8]
        self.group = f"workers-{run}"
        self.topics = create_run_topics(bootstrap, run, partitions)
        self.processes: list[subprocess.Popen[bytes]] = []

    def worker_options(self) -> WorkerOptions:
        """The worker options every entry point shares: lake paths, topics, group, samples."""
        return worker_options(self.lake, self.topics, self.group, sample_interval_s=1)

    def env(self) -> dict[str, str]:
        return worker_env(self.bootstrap, self.partitions)

    def log_path(self, name: str, index: int | None = None) -> Path:
        """The file the output of process ``name`` (the ``index``-th started) goes to."""
        return self.logs / f"{name}-{len(self.processes) if index is None else index}.log"

    def start(self, command: list[str], name: str, **popen: Any) -> subprocess.Popen[bytes]:
        """Start ``command`` with the broker in its environment, output to its log file."""
        log = self.log_path(name).open("wb")
        process = subprocess.Popen(
            command, env=self.env(), stdout=log, stderr=subprocess.STDOUT, **popen
        )
        log.close()  # the child holds its own descriptor
        self.processes.append(process)
        return process

    def start_worker(self, name: str) -> subprocess.Popen[bytes]:
        """One ``streaming/inference_worker.py`` process with a transactional id for ``name``."""
        # A stable id per worker slot: a restarted worker fences its killed predecessor
        # and aborts the transaction it left open at once.
        slot_ids = {"transactional_id": f"{self.group}-{name}", "source_id": name}
        command = script_command(self.worker_options().model_copy(update=slot_ids))
        return self.start(command, name)

    def committed(self) -> int:
        return committed_total(self.bootstrap, self.group, self.topics["events"])

    def wait_committed(self, at_least: int, *, restart: Callable[[], Any] | None = None) -> None:
        def reached() -> bool:
            for process in self.processes[-1:]:
                if process.poll() not in (None, 0) and restart is None:
                    pytest.fail(f"worker exited with {process.returncode}; see {self.logs}")
            if restart is not None and self.processes[-1].poll() is not None:
                restart()
            return self.committed() >= at_least

        wait_for(reached, timeout_s=TIMEOUT_S, what=f"{at_least} committed offsets", every_s=0.5)

    def stop_all(self) -> None:
        stop_processes(self.processes, WORKER_STOP_S)

    def prediction_counts(self, at_least: int) -> Counter[str]:
        """How often each event id occurs among the committed predictions."""
        import orjson

        records = read_committed(
            self.bootstrap, self.topics["predictions"], at_least=at_least, timeout_s=120
        )
        return Counter(orjson.loads(r.value)["event_id"] for r in records)
