"""The one way lakecast stops the processes it started: SIGTERM, a grace period, SIGKILL.

SIGTERM lets a worker finish its batch, commit and leave its group (a broker or Spark flush
and exit); one that is still running when the grace period ends is killed. Every stop in the
project (the local stack, the worker pool, ``--processes N``, the demo, the test workers)
goes through :func:`stop_processes`.

A process that has exited but whose parent has not reaped it yet (a zombie) counts as stopped:
only its parent can reap it, and ``lakecast local down`` run from another process than the one
that started a node would otherwise wait for it until the grace period and the kill both end.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from typing import Union

import psutil

# How long a process may take to go after SIGKILL (a child in uninterruptible sleep).
KILL_WAIT_S = 10.0
# How often a process that is not our child is looked at while we wait for it to go.
_POLL_S = 0.1

# A child of ours (subprocess) or any process of this user's (psutil: a pid file's).
Stoppable = Union[subprocess.Popen[bytes], psutil.Process]  # noqa: UP007 (a runtime alias)


def stop_processes(
    processes: Iterable[Stoppable],
    timeout_s: float,
    *,
    force: bool = False,
    on_kill: Callable[[Stoppable], None] | None = None,
) -> list[int | None]:
    """SIGTERM every process at once, wait for them all until one deadline ``timeout_s``
    away, then SIGKILL each one still running (``force``: SIGKILL at once, as a crash would).

    ``on_kill`` is called with each process about to be killed after the grace period (to log
    it). A process that is already gone is skipped without error.

    Returns:
        Each process's exit status, in order: negative when a signal ended it, None where it
        is not our child (psutil cannot tell).
    """
    targets = list(processes)
    for process in targets:
        _send(process, signal.SIGKILL if force else signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    statuses: list[int | None] = []
    for process in targets:
        try:
            status = _wait(process, max(deadline - time.monotonic(), 0.0))
        except (subprocess.TimeoutExpired, psutil.TimeoutExpired):
            if on_kill is not None:
                on_kill(process)
            _send(process, signal.SIGKILL)
            status = _wait(process, KILL_WAIT_S)
        statuses.append(status)
    return statuses


def _wait(process: Stoppable, timeout_s: float) -> int | None:
    """Wait for ``process`` to end; a zombie that is not our child has ended (None)."""
    if isinstance(process, subprocess.Popen):
        return process.wait(timeout=timeout_s)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            # Reaps it if it is our child; psutil polls for any other process.
            return process.wait(timeout=min(_POLL_S, max(deadline - time.monotonic(), 0.0)))
        except psutil.TimeoutExpired:
            if _is_zombie(process):
                return None
            if time.monotonic() >= deadline:
                raise


def _is_zombie(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True  # reaped since: gone


def _send(process: Stoppable, sig: signal.Signals) -> None:
    # The process may have exited since it was started or last polled.
    with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
        if isinstance(process, subprocess.Popen) and process.poll() is not None:
            return
        process.send_signal(sig)
