"""Detached local processes tracked by pid files, so that a later CLI call can find them.

A pid file records the pid, the process's start time and the command line lakecast started.
A process is ours only if all three still match and it runs as this user: a pid reused by an
unrelated process after a reboot or a crash, or a pid file that names a foreign process, is
never signalled. Pid files and logs live in private state folders (:mod:`lakecast.local.state`).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psutil

from lakecast.errors import LocalStackError
from lakecast.local.state import open_log, write_private
from lakecast.local.stopping import stop_processes

_CREATE_TIME_SLACK_S = 1.0
_CMDLINE_TRIES = 20


Verdict = Literal["ours", "gone", "foreign"]


@dataclass(frozen=True)
class TrackedProcess:
    """A process we launched: its pid, when it started, where it logs and its command line.

    ``cmdline`` is the argv lakecast passed; a pid file without one (written before it was
    recorded) is never trusted.
    """

    pid: int
    create_time: float
    log: str
    cmdline: tuple[str, ...] = ()

    def verdict(self) -> tuple[Verdict, str]:
        """``ours`` while this very process runs; otherwise ``gone`` or ``foreign`` and why."""
        try:
            process = psutil.Process(self.pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return "gone", "exited"
            if abs(process.create_time() - self.create_time) > _CREATE_TIME_SLACK_S:
                return "gone", "exited (the pid now belongs to a process started later)"
            if process.uids().real != os.getuid():
                return "foreign", f"runs as uid {process.uids().real}, not as this user"
            running = _cmdline(process)
        except psutil.NoSuchProcess:
            return "gone", "exited"
        except psutil.Error as exc:
            return "foreign", f"cannot be inspected ({exc})"
        if not self.cmdline:
            return "foreign", "its pid file records no command line to check it against"
        if not same_command(running, self.cmdline):
            return "foreign", f"its command line is {' '.join(running)[:200]!r}"
        return "ours", "running"

    def is_alive(self) -> bool:
        """Whether this very process (not a reused pid, not a foreign one) still runs."""
        return self.verdict()[0] == "ours"

    def exit_code(self) -> int | None:
        """Reap a zombie child and return its status; None while it runs or if not ours."""
        with contextlib.suppress(ChildProcessError, OSError):
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                return os.waitstatus_to_exitcode(status)
        return None


def _cmdline(process: psutil.Process) -> tuple[str, ...]:
    # Right after exec the kernel can show an empty command line for a moment (seen under
    # pytest on a loaded machine); a process that keeps it empty is not one we started.
    for _ in range(_CMDLINE_TRIES):
        running = tuple(process.cmdline())
        if running:
            return running
        time.sleep(0.05)
    return ()


def same_command(running: Sequence[str], started: Sequence[str]) -> bool:
    """Whether a process's command line is the one lakecast started.

    Equal, or ending with the started argv after its program: a launcher script such as
    Spark's ``bin/spark-class`` runs under its interpreter (``bash spark-class ARGS``), then
    execs ``java ... CLASS ARGS`` in the same pid, keeping the class and the arguments.
    """
    running, started = list(running), list(started)
    if running == started:
        return True
    tail = started[1:]
    return bool(tail) and len(running) > len(tail) and running[-len(tail) :] == tail


def spawn_detached(
    argv: list[str], *, log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> TrackedProcess:
    """Start ``argv`` in its own session, stdout and stderr appended to ``log``.

    The new session keeps the process alive after the CLI that started it exits, and away
    from the terminal's Ctrl-C.
    """
    with open_log(log) as out:
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            msg = f"could not launch {argv[0]}: {exc}"
            raise LocalStackError(msg) from exc
    try:
        create_time = psutil.Process(process.pid).create_time()
    except psutil.Error:
        create_time = 0.0
    # The Popen object is dropped on purpose: the pid file is the handle from now on.
    process.returncode = 0  # keeps Popen.__del__ from warning about a running child
    return TrackedProcess(
        pid=process.pid, create_time=create_time, log=str(log), cmdline=tuple(argv)
    )


def write_pid_file(path: Path, process: TrackedProcess) -> None:
    """Record ``process`` (pid, start time, log, command line) in a private pid file."""
    payload = {
        "pid": process.pid,
        "create_time": process.create_time,
        "log": process.log,
        "cmdline": list(process.cmdline),
    }
    write_private(path, json.dumps(payload))


def read_pid_file(path: Path) -> TrackedProcess | None:
    """The process a pid file names, or None when there is no readable pid file."""
    try:
        data = json.loads(path.read_text())
        cmdline = data.get("cmdline") or []
        if not isinstance(cmdline, list):
            return None
        return TrackedProcess(
            int(data["pid"]),
            float(data["create_time"]),
            str(data["log"]),
            tuple(str(arg) for arg in cmdline),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


@dataclass(frozen=True)
class PidFileCheck:
    """What a pid file names and whether that process is ours (see :meth:`verdict`)."""

    path: Path
    process: TrackedProcess | None
    verdict: Verdict | Literal["absent"]
    reason: str

    def describe(self) -> str:
        pid = self.process.pid if self.process else "?"
        return f"pid {pid} named by {self.path} is not a process lakecast started: {self.reason}"


def check_pid_file(path: Path) -> PidFileCheck:
    """Inspect a pid file without touching it or the process it names."""
    process = read_pid_file(path)
    if process is None:
        reason = "unreadable pid file" if path.exists() else "no pid file"
        return PidFileCheck(path, None, "absent", reason)
    verdict, reason = process.verdict()
    return PidFileCheck(path, process, verdict, reason)


def live_process(path: Path) -> TrackedProcess | None:
    """The process of a pid file if it is ours and runs; otherwise the pid file is removed.

    A foreign process is left alone: it is not ours to signal, and the pid file that named
    it is as stale as one of an exited process.
    """
    check = check_pid_file(path)
    if check.verdict == "ours":
        return check.process
    if check.process is not None and check.verdict == "gone":
        check.process.exit_code()
    path.unlink(missing_ok=True)
    return None


def terminate(process: TrackedProcess, *, timeout_s: float = 30.0, force: bool = False) -> None:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL (:func:`stop_processes`); reaps the
    process if it is our child.

    ``force`` sends SIGKILL at once, as a crash would.
    """
    if not process.is_alive():
        process.exit_code()
        return
    try:
        stop_processes([psutil.Process(process.pid)], timeout_s, force=force)
    except psutil.NoSuchProcess:
        pass
    except psutil.Error as exc:
        msg = f"could not stop pid {process.pid}: {exc}"
        raise LocalStackError(msg) from exc
    process.exit_code()


def tail(path: Path | str, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file, or a note that there is none."""
    try:
        with Path(path).open(errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines)).rstrip()
    except OSError:
        return f"(no log at {path})"
