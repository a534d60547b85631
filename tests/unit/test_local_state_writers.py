"""The writers of files under ``.state/`` go through :mod:`lakecast.local.state`.

Worker-pool logs, the demos' service and fleet logs and the demos' log folder: 0600 files in
0700 folders (``.state`` itself included), and a symlink planted at a log's name is refused
before any process starts. Real files, real symlinks, real short-lived children.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lakecast.autoscaling.pool import WorkerPool
from lakecast.config import LocalStackSettings, Settings
from lakecast.demo.fleet import DemoTopics, WorkerFleet
from lakecast.errors import LocalStackError
from lakecast.local.state import private_dir


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The umask most users have: without the helpers, folders would come out 0755."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _planted(folder: Path, name: str) -> Path:
    """A symlink at ``folder/name`` to a file another user could read; returns the target."""
    target = folder.parent / f"{name}.target"
    (folder / name).symlink_to(target)
    return target


def test_pool_worker_logs_are_private_and_never_follow_a_symlink(tmp_path: Path) -> None:
    logs = tmp_path / "state" / "pool"
    pool = WorkerPool([sys.executable, "-c", "print('served')"], name="w", log_dir=logs)
    assert pool.start_one() == "w-0"
    deadline = time.monotonic() + 30
    while pool.live():
        assert time.monotonic() < deadline, "the worker did not exit"
        time.sleep(0.05)
    log = logs / "w-0.log"
    assert log.read_text().strip() == "served"
    assert _mode(log) == 0o600
    assert _mode(logs) == _mode(logs.parent) == 0o700

    target = _planted(logs, "w-1.log")
    with pytest.raises(LocalStackError, match=r"w-1\.log"):
        pool.start_one()
    assert not target.exists()
    assert pool.live() == 0


def test_demo_service_logs_are_private(tmp_path: Path) -> None:
    from lakecast.demo.loop import _service

    logs = tmp_path / "demo"
    topics = DemoTopics(run="r1")
    process = _service("monitor", topics, logs, "--help")
    assert process.wait(timeout=120) == 0
    log = logs / "monitor-r1.log"
    assert "Usage" in log.read_text()
    assert _mode(log) == 0o600
    assert _mode(logs) == 0o700

    target = _planted(logs, "autoscaler-r1.log")
    with pytest.raises(LocalStackError, match=r"autoscaler-r1\.log"):
        _service("autoscaler", topics, logs, "--help")
    assert not target.exists()


def test_demo_fleet_refuses_a_symlinked_log_before_starting_workers(tmp_path: Path) -> None:
    logs = private_dir(tmp_path / "demo")
    fleet = WorkerFleet(DemoTopics(run="r2"), 1, logs)
    target = _planted(logs, "workers-r2.log")
    with pytest.raises(LocalStackError, match=r"workers-r2\.log"):
        fleet.start()
    assert fleet._child is None
    assert not target.exists()


def test_the_demos_log_folder_makes_state_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lakecast.cli import demo

    state = tmp_path / "project" / ".state"
    configured = Settings(local=LocalStackSettings(state_dir=str(state)))
    monkeypatch.setattr(demo, "settings", lambda: configured)
    assert demo._log_dir() == state / "demo"
    for folder in (state.parent, state, state / "demo"):
        assert _mode(folder) == 0o700, folder
