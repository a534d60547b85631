"""Detached processes and their pid files, with a real short-lived child (``sleep``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import psutil

from lakecast.local import processes


def _sleeper(tmp_path: Path) -> processes.TrackedProcess:
    argv = [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"]
    return processes.spawn_detached(argv, log=tmp_path / "logs" / "sleeper.out")


def test_spawned_process_runs_in_its_own_session_and_is_found_by_its_pid_file(
    tmp_path: Path,
) -> None:
    child = _sleeper(tmp_path)
    pid_file = tmp_path / "sleeper.pid"
    try:
        processes.write_pid_file(pid_file, child)
        found = processes.live_process(pid_file)
        assert found == child
        assert psutil.Process(child.pid).pid == child.pid
        assert os.getsid(child.pid) == child.pid  # a session leader: survives our exit
    finally:
        processes.terminate(child, timeout_s=5)
    assert not child.is_alive()
    assert processes.live_process(pid_file) is None
    assert not pid_file.exists()  # the stale pid file was removed


def test_a_reused_pid_is_not_taken_for_ours(tmp_path: Path) -> None:
    child = _sleeper(tmp_path)
    try:
        impostor = processes.TrackedProcess(child.pid, child.create_time - 100, child.log)
        assert not impostor.is_alive()
    finally:
        processes.terminate(child, timeout_s=5)


def test_force_kill_and_log_tail(tmp_path: Path) -> None:
    child = _sleeper(tmp_path)
    processes.terminate(child, timeout_s=5, force=True)
    assert not child.is_alive()
    log = tmp_path / "numbers.log"
    log.write_text("".join(f"line {n}\n" for n in range(50)))
    assert processes.tail(log, 3) == "line 47\nline 48\nline 49"
    assert "no log" in processes.tail(tmp_path / "missing.log")


def test_unreadable_pid_file_means_not_running(tmp_path: Path) -> None:
    pid_file = tmp_path / "broken.pid"
    pid_file.write_text("not json")
    assert processes.read_pid_file(pid_file) is None
    assert processes.live_process(pid_file) is None
