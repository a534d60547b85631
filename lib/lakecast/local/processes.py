"""Detached local processes tracked by pid files, so that a later CLI call can find them.

A pid file records the pid and the process's start time: a pid reused by an unrelated
process after a reboot or a crash is not mistaken for ours.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import psutil

from lakecast.errors import LocalStackError

_CREATE_TIME_SLACK_S = 1.0
_KILL_WAIT_S = 10.0


@dataclass(frozen=True)
class TrackedProcess:
    """A process we launched: its pid, when it started, and where it logs."""

    pid: int
    create_time: float
    log: str

    def is_alive(self) -> bool:
        """Whether this very process (not a reused pid) still runs."""
        try:
            process = psutil.Process(self.pid)
            if abs(process.create_time() - self.create_time) > _CREATE_TIME_SLACK_S:
                return False
            return process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def exit_code(self) -> int | None:
        """Reap a zombie child and return its status; None while it runs or if not ours."""
        with contextlib.suppress(ChildProcessError, OSError):
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                return os.waitstatus_to_exitcode(status)
        return None


def spawn_detached(
    argv: list[str], *, log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> TrackedProcess:
    """Start ``argv`` in its own session, stdout and stderr appended to ``log``.

    The new session keeps the process alive after the CLI that started it exits, and away
    from the terminal's Ctrl-C.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
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
    return TrackedProcess(pid=process.pid, create_time=create_time, log=str(log))


def write_pid_file(path: Path, process: TrackedProcess) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"pid": process.pid, "create_time": process.create_time, "log": process.log}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload))
    tmp.replace(path)


def read_pid_file(path: Path) -> TrackedProcess | None:
    """The process a pid file names, or None when there is no readable pid file."""
    try:
        data = json.loads(path.read_text())
        return TrackedProcess(int(data["pid"]), float(data["create_time"]), str(data["log"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def live_process(path: Path) -> TrackedProcess | None:
    """The process of a pid file if it still runs; a stale pid file is removed."""
    process = read_pid_file(path)
    if process is not None and process.is_alive():
        return process
    if process is not None:
        process.exit_code()
    path.unlink(missing_ok=True)
    return None


def terminate(process: TrackedProcess, *, timeout_s: float = 30.0, force: bool = False) -> None:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL; reaps the process if it is our child.

    ``force`` sends SIGKILL at once, as a crash would.
    """
    if not process.is_alive():
        process.exit_code()
        return
    try:
        handle = psutil.Process(process.pid)
        if force:
            handle.kill()
        else:
            handle.terminate()
        try:
            handle.wait(timeout=timeout_s)
        except psutil.TimeoutExpired:
            handle.kill()
            handle.wait(timeout=_KILL_WAIT_S)
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
