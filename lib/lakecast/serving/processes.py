"""``lakecast stream worker --processes N``: N worker processes in one consumer group.

Each child is a fresh interpreter running ``lakecast stream worker`` with one process, its
own metrics port (base + index), and two identities stable for its slot: a transactional id
and a static group member id (``kafka.group_instance_id``, KIP-345). A child that crashes is
started again at once; its first ``init_transactions`` fences its dead predecessor and aborts
the transaction it left open (instead of after the transaction timeout), and it takes its
predecessor's place in the group and its partitions without a rebalance (instead of after the
session timeout, during which the rebalance held the other workers too). Measured with
``benchmarks/faults.py``, one of two workers killed at 1,500 events/s: a unique transactional
id and a dynamic member stalled every partition 43 s; stable ids stalled the killed worker's
partitions for as long as its successor took to start.
SIGTERM / SIGINT are passed on to the children, which finish their batch and leave the group.

The children run in a session of their own, so a signal meant for the whole foreground process
group (Ctrl-C in a terminal) reaches only the supervisor, which passes it on once: a worker that
got it twice would take the second as "exit now" and leave without finishing its batch.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field

from lakecast.config import ENV_PREFIX
from lakecast.local.stopping import Stoppable, stop_processes
from lakecast.serving.worker_config import WorkerOptions, worker_command

log = logging.getLogger(__name__)

# A child that exits within this of its start is started again only after the backoff (a
# crash loop would spin); one that served a while is started again at once: the partitions of
# its slot wait for it.
RESTART_BACKOFF_S = 2.0
MIN_UPTIME_S = 30.0
SUPERVISE_EVERY_S = 0.2
STOP_TIMEOUT_S = 30.0
GROUP_INSTANCE_ENV = f"{ENV_PREFIX}KAFKA__GROUP_INSTANCE_ID"


def slot_transactional_id(group_id: str, index: int) -> str:
    """The transactional id of worker slot ``index`` of ``group_id`` on this host."""
    return f"{group_id}-{socket.gethostname()}-{index}"


def slot_group_instance_id(group_id: str, index: int) -> str:
    """The static group member id of worker slot ``index`` of ``group_id`` on this host."""
    return slot_transactional_id(group_id, index)


def slot_environment(group_id: str, index: int) -> dict[str, str]:
    """The environment variables of slot ``index``'s child: its static group member id."""
    return {GROUP_INSTANCE_ENV: slot_group_instance_id(group_id, index)}


def slot_source_id(index: int) -> str:
    """The source id (metric samples, Kafka client id) of worker slot ``index`` on this host."""
    return f"worker-{socket.gethostname()}-{index}"


def child_command(
    index: int, options: WorkerOptions, metrics_port: int, group_id: str
) -> list[str]:
    """The argv of worker ``index``: the same options, one process, its port and slot ids."""
    slot = options.model_copy(
        update={
            "group_id": group_id,
            "transactional_id": slot_transactional_id(group_id, index),
            "source_id": slot_source_id(index),
        }
    )
    port = metrics_port + index if metrics_port else 0
    return worker_command(slot, processes=1, metrics_port=port)


@dataclass(frozen=True)
class ProcessesReport:
    """How a supervised run ended: restarts along the way, each slot's final exit status."""

    restarts: int
    exit_statuses: dict[int, int]

    @property
    def clean(self) -> bool:
        """True when every child exited with status 0 on the stop signal."""
        return all(status == 0 for status in self.exit_statuses.values())


@dataclass
class WorkerProcesses:
    """Starts the children, restarts those that exit unasked, stops them all on a signal."""

    commands: list[list[str]]
    # Per slot, environment variables of its child (its static group member id).
    environments: list[dict[str, str]] = field(default_factory=list)
    restarts: int = 0
    children: list[subprocess.Popen[bytes] | None] = field(default_factory=list)
    started_at: list[float] = field(default_factory=list)

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        extra = self.environments[index] if index < len(self.environments) else {}
        env = {**os.environ, **extra} if extra else None
        while len(self.started_at) <= index:
            self.started_at.append(0.0)
        self.started_at[index] = time.monotonic()
        # A session of its own: see the module docstring.
        return subprocess.Popen(self.commands[index], start_new_session=True, env=env)

    def start(self) -> None:
        self.children = [self._spawn(index) for index in range(len(self.commands))]
        log.info("started %d worker processes", len(self.children))

    def supervise(self, stop: threading.Event) -> ProcessesReport:
        """Until ``stop``: restart a child that exited; then stop them all."""
        while not stop.wait(SUPERVISE_EVERY_S):
            for index, child in enumerate(self.children):
                if child is not None and child.poll() is not None:
                    log.warning("worker %d exited with %s; restarting", index, child.returncode)
                    if time.monotonic() - self.started_at[index] < MIN_UPTIME_S:
                        time.sleep(RESTART_BACKOFF_S)
                    if stop.is_set():
                        break
                    self.children[index] = self._spawn(index)
                    self.restarts += 1
        return ProcessesReport(self.restarts, self.stop())

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> dict[int, int]:
        """SIGTERM every running child, SIGKILL those still there after ``timeout_s``.

        Returns:
            The exit status of each slot's last process (negative: killed by that signal).
        """
        slots = [(index, child) for index, child in enumerate(self.children) if child is not None]

        def killing(child: Stoppable) -> None:
            log.warning("worker pid %d did not stop in %.0f s; killing", child.pid, timeout_s)

        stopped = stop_processes([child for _, child in slots], timeout_s, on_kill=killing)
        statuses: dict[int, int] = {}
        for (index, child), status in zip(slots, stopped, strict=True):
            statuses[index] = child.returncode if status is None else status
            log.log(
                logging.INFO if child.returncode == 0 else logging.WARNING,
                "worker %d (pid %d) stopped with exit status %d",
                index,
                child.pid,
                child.returncode,
                extra={"worker": index, "pid": child.pid, "exit_status": child.returncode},
            )
        return statuses


def run_processes(
    count: int,
    options: WorkerOptions,
    *,
    metrics_port: int,
    group_id: str,
    stop: threading.Event,
) -> ProcessesReport:
    """Run ``count`` worker processes until ``stop`` is set, then stop them all."""
    commands = [child_command(i, options, metrics_port, group_id) for i in range(count)]
    environments = [slot_environment(group_id, i) for i in range(count)]
    workers = WorkerProcesses(commands, environments)
    workers.start()
    return workers.supervise(stop)
