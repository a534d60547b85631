"""`lakecast local down` with pid files it must not trust, and a state folder left too open.

The console script runs in a subprocess against its own config, as a user would run it.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml

from lakecast.local.ports import free_port

LAKECAST = Path(sys.executable).with_name("lakecast")


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """A process of this user that lakecast did not start."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    yield process
    process.kill()
    process.wait(timeout=10)


def _local(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKECAST__")}
    env["LAKECAST_CONFIG"] = str(config)
    return subprocess.run(
        [str(LAKECAST), "local", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_down_leaves_a_foreign_process_alone_says_so_and_tightens_the_state_folder(
    tmp_path: Path, stranger: subprocess.Popen[bytes]
) -> None:
    state = tmp_path / "state"
    (state / "spark").mkdir(parents=True)
    state.chmod(0o755)
    ports = {name: free_port() for name in ("broker", "controller", "master", "ui")}
    config = tmp_path / "lakecast.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "local": {
                    "state_dir": str(state),
                    "broker_port": ports["broker"],
                    "controller_port": ports["controller"],
                    "spark_master_port": ports["master"],
                    "spark_master_ui_port": ports["ui"],
                }
            }
        )
    )
    started = psutil.Process(stranger.pid).create_time()
    # A pid file that passes the old check (pid and start time) but names a foreign process.
    master_pid = state / "spark" / "master.pid"
    master_pid.write_text(
        json.dumps(
            {
                "pid": stranger.pid,
                "create_time": started,
                "log": str(state / "spark" / "logs" / "master.out"),
                "cmdline": ["spark-class", "org.apache.spark.deploy.master.Master"],
            }
        )
    )
    # One written before command lines were recorded, for the broker.
    (state / "kafka").mkdir()
    broker_pid = state / "kafka" / "broker.pid"
    broker_pid.write_text(json.dumps({"pid": stranger.pid, "create_time": started, "log": "x"}))

    down = _local(config, "down")
    assert down.returncode == 0, down.stderr
    assert f"left alone: pid {stranger.pid} named by {master_pid}" in down.stdout
    assert "its command line is" in down.stdout
    assert f"left alone: pid {stranger.pid} named by {broker_pid}" in down.stdout
    assert "records no command line" in down.stdout
    assert "nothing was running" in down.stdout
    assert stranger.poll() is None, "lakecast signalled a process it did not start"
    assert not master_pid.exists()
    assert not broker_pid.exists()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
