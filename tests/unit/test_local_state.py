"""Private state folders and files, and pid files trusted only for the process lakecast started.

Real files, real symlinks and real short-lived children; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from lakecast.errors import LocalStackError
from lakecast.local import processes
from lakecast.local.state import open_log, private_dir, write_private


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """A process lakecast did not start (as another tool of the same user would be)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield process
    process.kill()
    process.wait(timeout=10)


def test_state_folder_is_created_0700_with_its_parents(tmp_path: Path) -> None:
    root = tmp_path / "state"
    made = private_dir(root / "spark" / "logs")
    assert made.is_dir()
    for folder in (root, root / "spark", root / "spark" / "logs"):
        assert _mode(folder) == 0o700, folder


def test_a_wider_state_folder_is_tightened(tmp_path: Path) -> None:
    root = tmp_path / "state"
    root.mkdir(mode=0o755)
    root.chmod(0o777)
    private_dir(root)
    assert _mode(root) == 0o700


def test_a_symlink_as_state_folder_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "state").symlink_to(elsewhere)
    with pytest.raises(LocalStackError, match="symlink"):
        private_dir(tmp_path / "state")


def test_a_private_write_replaces_a_planted_symlink_and_never_writes_through_it(
    tmp_path: Path,
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    state = private_dir(tmp_path / "state")
    target = state / "master.pid"
    target.symlink_to(victim)
    write_private(target, "secret")
    assert victim.read_text() == "precious"
    assert not target.is_symlink()
    assert target.read_text() == "secret"
    assert _mode(target) == 0o600
    assert [p.name for p in state.iterdir()] == ["master.pid"]  # no temporary left behind


def test_a_log_is_never_opened_through_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    state = private_dir(tmp_path / "state")
    (state / "daemon.out").symlink_to(victim)
    with pytest.raises(LocalStackError, match=r"daemon\.out"):
        open_log(state / "daemon.out")
    assert victim.read_text() == "precious"
    with open_log(state / "fresh.out") as log:
        log.write(b"line\n")
    assert _mode(state / "fresh.out") == 0o600


def test_a_pid_file_records_the_command_line_and_finds_its_process(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    child = processes.spawn_detached(argv, log=tmp_path / "state" / "logs" / "child.out")
    pid_file = tmp_path / "state" / "child.pid"
    try:
        processes.write_pid_file(pid_file, child)
        assert json.loads(pid_file.read_text())["cmdline"] == argv
        assert _mode(pid_file) == 0o600
        assert processes.live_process(pid_file) == child
    finally:
        processes.terminate(child, timeout_s=5)


def test_a_pid_file_naming_a_foreign_process_is_never_signalled(
    tmp_path: Path, stranger: subprocess.Popen[bytes]
) -> None:
    started = psutil.Process(stranger.pid).create_time()
    # Right pid, right start time, but not the command line lakecast recorded.
    forged = processes.TrackedProcess(
        stranger.pid, started, str(tmp_path / "x.log"), ("java", "kafka.Kafka", "server.conf")
    )
    pid_file = tmp_path / "broker.pid"
    processes.write_pid_file(pid_file, forged)
    check = processes.check_pid_file(pid_file)
    assert check.verdict == "foreign"
    assert "command line" in check.describe()
    assert str(stranger.pid) in check.describe()
    processes.terminate(forged, timeout_s=1)
    processes.terminate(forged, timeout_s=1, force=True)
    assert processes.live_process(pid_file) is None
    assert not pid_file.exists()
    assert stranger.poll() is None  # still running: never signalled


def test_a_pid_file_without_a_command_line_is_not_trusted(
    tmp_path: Path, stranger: subprocess.Popen[bytes]
) -> None:
    pid_file = tmp_path / "old.pid"
    started = psutil.Process(stranger.pid).create_time()
    pid_file.write_text(json.dumps({"pid": stranger.pid, "create_time": started, "log": "x"}))
    check = processes.check_pid_file(pid_file)
    assert check.verdict == "foreign"
    assert "no command line" in check.reason
    processes.terminate(check.process, timeout_s=1) if check.process else None
    assert stranger.poll() is None


def test_a_launcher_that_execs_its_program_is_still_ours(tmp_path: Path) -> None:
    # As Spark's bin/spark-class: a bash script that execs java with the same trailing args.
    launcher = tmp_path / "launch.sh"
    launcher.write_text(f'#!/usr/bin/env bash\nexec {sys.executable} -c "$@"\n')
    launcher.chmod(0o700)
    argv = [str(launcher), "import time; time.sleep(60)", "--port", "7077"]
    child = processes.spawn_detached(argv, log=tmp_path / "logs" / "launch.out")
    try:
        deadline = time.monotonic() + 10
        # Mid-exec the kernel can show an empty command line for a moment.
        while (psutil.Process(child.pid).cmdline() or [""])[0] != sys.executable:
            assert time.monotonic() < deadline, "the launcher never exec'd"
            time.sleep(0.05)
        assert child.is_alive()
        assert processes.same_command(psutil.Process(child.pid).cmdline(), argv)
        assert not processes.same_command([sys.executable, "-c", "other"], argv)
    finally:
        processes.terminate(child, timeout_s=5)
    assert not child.is_alive()
    assert os.path.exists(child.log)
