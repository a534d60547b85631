"""The local worker pool: the autoscaler's hands on a laptop or a single host.

It starts and stops worker processes of one command line (by default the inference worker,
``python -m lakecast.cli.main stream worker``), so that the number of live processes follows the
autoscaler's decisions. Workers join the same consumer group, so Kafka spreads the partitions
over however many there are. Stopping sends SIGTERM (the worker finishes its batch, commits and
leaves the group), then SIGKILL after a grace period. A worker that exits by itself is reaped
and logged; the next decision brings the count back.

Workers inherit the autoscaler's environment, and so its identity on a secured cluster, unless
the pool is given their own config overlay (``autoscaling.worker_config_overlay``): then that
replaces ``LAKECAST_CONFIG_OVERLAY`` and the autoscaler's ``LAKECAST__KAFKA__SECURITY__...``
overrides are not passed on.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from lakecast.config import ENV_PREFIX, OVERLAY_ENV
from lakecast.local.state import open_log
from lakecast.local.stopping import Stoppable, stop_processes
from lakecast.serving.worker_config import worker_command

log = logging.getLogger(__name__)

WORKER_ID_ENV = "LAKECAST_WORKER_ID"
# The autoscaler's own Kafka identity, when given in the environment rather than an overlay.
_SECURITY_ENV_PREFIX = f"{ENV_PREFIX}KAFKA__SECURITY__"


@dataclass(frozen=True)
class ScaleResult:
    """What :meth:`WorkerPool.scale_to` did."""

    before: int
    after: int
    started: tuple[str, ...] = ()
    stopped: tuple[str, ...] = ()


@dataclass
class _Worker:
    worker_id: str
    process: subprocess.Popen[bytes]
    started: float
    log_file: IO[bytes] | None = None


class WorkerPool:
    """Worker processes of one command line, started and stopped to a target count.

    Args:
        command: the argv of a worker, or a function of the worker id that returns it.
        name: prefix of the worker ids (``{name}-{n}``), also exported to each worker as
            ``LAKECAST_WORKER_ID``.
        env: extra environment for the workers (on top of this process's).
        stop_timeout_s: how long a worker may take to exit after SIGTERM before SIGKILL.
        log_dir: where each worker's stdout and stderr go (``{id}.log``, 0600 in a folder made
            or tightened to 0700, never through a symlink); None inherits ours.
        config_overlay: the workers' ``LAKECAST_CONFIG_OVERLAY`` (their own Kafka principal),
            in place of ours; ``LAKECAST__KAFKA__SECURITY__*`` of ours are then dropped. None:
            they inherit ours.
    """

    def __init__(
        self,
        command: Sequence[str] | Callable[[str], Sequence[str]] | None = None,
        *,
        name: str = "worker",
        env: Mapping[str, str] | None = None,
        stop_timeout_s: float = 30.0,
        log_dir: str | Path | None = None,
        config_overlay: str | None = None,
    ) -> None:
        self._command = command if command is not None else worker_command()
        self.name = name
        self.env = dict(env or {})
        self.config_overlay = config_overlay
        self.stop_timeout_s = stop_timeout_s
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self._workers: list[_Worker] = []
        self._next = 0

    def command_for(self, worker_id: str) -> list[str]:
        command = self._command(worker_id) if callable(self._command) else self._command
        if not command:
            msg = f"worker pool {self.name!r}: the worker command is empty"
            raise ValueError(msg)
        return list(command)

    def _reap(self) -> None:
        alive = []
        for worker in self._workers:
            code = worker.process.poll()
            if code is None:
                alive.append(worker)
                continue
            log.warning(
                "worker %s (pid %d) exited by itself with status %s",
                worker.worker_id,
                worker.process.pid,
                code,
                extra={"worker": worker.worker_id, "pid": worker.process.pid, "status": code},
            )
            if worker.log_file:
                worker.log_file.close()
        self._workers = alive

    def live(self) -> int:
        """How many worker processes are running now."""
        self._reap()
        return len(self._workers)

    @property
    def pids(self) -> list[int]:
        self._reap()
        return [w.process.pid for w in self._workers]

    def start_one(self) -> str:
        """Start one worker; returns its id."""
        worker_id = f"{self.name}-{self._next}"
        self._next += 1
        command = self.command_for(worker_id)
        log_file = None
        if self.log_dir is not None:
            log_file = open_log(self.log_dir / f"{worker_id}.log")
        process = subprocess.Popen(
            command,
            env={**self.base_environment(), **self.env, WORKER_ID_ENV: worker_id},
            stdout=log_file,
            stderr=subprocess.STDOUT if log_file else None,
            stdin=subprocess.DEVNULL,
            # Its own session: a Ctrl-C on the autoscaler's terminal does not hit the workers
            # at once; the pool stops them in order instead.
            start_new_session=True,
        )
        self._workers.append(_Worker(worker_id, process, time.monotonic(), log_file))
        log.info(
            "started worker %s (pid %d)",
            worker_id,
            process.pid,
            extra={"worker": worker_id, "pid": process.pid, "command": command},
        )
        return worker_id

    def base_environment(self) -> dict[str, str]:
        """Our environment as the workers get it: with their own overlay, if one is set."""
        if self.config_overlay is None:
            return dict(os.environ)
        inherited = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(_SECURITY_ENV_PREFIX)
        }
        return {**inherited, OVERLAY_ENV: self.config_overlay}

    def stop(self, count: int) -> list[str]:
        """Stop the ``count`` newest workers: SIGTERM together, SIGKILL after the timeout."""
        self._reap()
        victims = self._workers[len(self._workers) - count :] if count > 0 else []
        by_process = {id(worker.process): worker for worker in victims}

        def killing(process: Stoppable) -> None:
            worker = by_process[id(process)]
            log.warning(
                "worker %s (pid %d) ignored SIGTERM for %g s: SIGKILL",
                worker.worker_id,
                worker.process.pid,
                self.stop_timeout_s,
                extra={"worker": worker.worker_id, "pid": worker.process.pid},
            )

        stop_processes([w.process for w in victims], self.stop_timeout_s, on_kill=killing)
        for worker in victims:
            log.info(
                "stopped worker %s (pid %d, status %s)",
                worker.worker_id,
                worker.process.pid,
                worker.process.returncode,
                extra={"worker": worker.worker_id, "status": worker.process.returncode},
            )
            if worker.log_file:
                worker.log_file.close()
        gone = {id(w) for w in victims}
        self._workers = [w for w in self._workers if id(w) not in gone]
        return [w.worker_id for w in victims]

    def scale_to(self, desired: int) -> ScaleResult:
        """Start or stop workers until ``desired`` are running."""
        if desired < 0:
            msg = f"worker pool {self.name!r}: desired workers must not be negative, got {desired}"
            raise ValueError(msg)
        before = self.live()
        started: list[str] = []
        stopped: list[str] = []
        if desired > before:
            started = [self.start_one() for _ in range(desired - before)]
        elif desired < before:
            stopped = self.stop(before - desired)
        return ScaleResult(before, self.live(), tuple(started), tuple(stopped))

    def stop_all(self) -> list[str]:
        """Stop every worker (the autoscaler does this when it stops)."""
        return self.stop(self.live())
