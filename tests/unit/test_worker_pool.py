"""The local worker pool on real (trivial) processes."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from lakecast.autoscaling.pool import WORKER_ID_ENV, WorkerPool
from lakecast.serving.worker_config import worker_command

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]
# Ignores SIGTERM, so only SIGKILL stops it.
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    " print('ready', flush=True); time.sleep(600)",
]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_scale_up_and_down_starts_and_stops_processes() -> None:
    pool = WorkerPool(SLEEPER, name="t", stop_timeout_s=5)
    try:
        result = pool.scale_to(3)
        assert result.before == 0
        assert result.after == 3
        assert result.started == ("t-0", "t-1", "t-2")
        pids = pool.pids
        assert all(alive(pid) for pid in pids)
        down = pool.scale_to(1)
        assert down.stopped == ("t-1", "t-2")  # the newest go first
        assert pool.live() == 1
        assert not alive(pids[1])
        assert not alive(pids[2])
        assert alive(pids[0])
    finally:
        pool.stop_all()
    assert pool.live() == 0


def test_a_worker_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    pool = WorkerPool(STUBBORN, stop_timeout_s=0.5, log_dir=tmp_path)
    pool.start_one()
    log = tmp_path / "worker-0.log"
    deadline = time.monotonic() + 10
    while "ready" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "the stubborn worker never started"
        time.sleep(0.05)
    (pid,) = pool.pids
    assert pool.stop_all() == ["worker-0"]
    assert pool.live() == 0
    assert not alive(pid)


def test_a_worker_that_exits_is_not_counted() -> None:
    pool = WorkerPool([sys.executable, "-c", "pass"])
    pool.start_one()
    deadline = time.monotonic() + 10
    while pool.live():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert pool.live() == 0


def test_each_worker_gets_its_id_in_the_command_and_environment(tmp_path: Path) -> None:
    out = tmp_path / "ids"
    script = f"import os; open({str(out)!r}, 'a').write(os.environ[{WORKER_ID_ENV!r}] + '\\n')"
    pool = WorkerPool(lambda worker_id: [sys.executable, "-c", script, worker_id], name="x")
    pool.scale_to(2)
    deadline = time.monotonic() + 10
    while pool.live():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert sorted(out.read_text().split()) == ["x-0", "x-1"]
    assert pool.command_for("x-9")[-1] == "x-9"


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        WorkerPool(SLEEPER).scale_to(-1)
    with pytest.raises(ValueError, match="command is empty"):
        WorkerPool([]).start_one()


def test_default_command_runs_the_stream_worker() -> None:
    assert worker_command(extra_args=["--x"])[1:] == [
        "-m",
        "lakecast.cli.main",
        "stream",
        "worker",
        "--x",
    ]
