"""``--processes N``: each child gets one process, its own port and a stable slot id."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from lakecast.config import Settings, load_settings
from lakecast.serving import processes
from lakecast.serving.processes import (
    GROUP_INSTANCE_ENV,
    WorkerProcesses,
    child_command,
    slot_environment,
    slot_transactional_id,
)
from lakecast.serving.worker_config import WorkerConfig, WorkerOptions


def test_children_get_their_own_port_and_a_stable_transactional_id() -> None:
    commands = [
        child_command(i, WorkerOptions(model="purchase@champion"), 9101, "g") for i in range(3)
    ]
    for index, command in enumerate(commands):
        assert command[:5] == [sys.executable, "-m", "lakecast.cli.main", "stream", "worker"]
        options = dict(zip(command[5::2], command[6::2], strict=True))
        assert options["--model"] == "purchase@champion"
        assert options["--processes"] == "1"
        assert options["--metrics-port"] == str(9101 + index)
        assert options["--transactional-id"] == slot_transactional_id("g", index)
    assert len({slot_transactional_id("g", i) for i in range(3)}) == 3
    assert slot_transactional_id("g", 1) == slot_transactional_id("g", 1)


def test_a_zero_port_stays_off_for_every_child() -> None:
    options = child_command(2, WorkerOptions(), 0, "g")
    assert options[options.index("--metrics-port") + 1] == "0"


def test_worker_config_takes_the_serving_section_and_overrides() -> None:
    settings = Settings.model_validate(
        {
            "serving": {"max_batch": 64, "delivery": "at_least_once"},
            "kafka": {"topics": {"dlq": "d"}},
        }
    )
    config = WorkerConfig.from_settings(settings, WorkerOptions(max_wait_ms=7, events_topic=None))
    loop = config.loop
    assert (loop.max_batch, loop.delivery, loop.max_wait_ms) == (64, "at_least_once", 7)
    assert (config.topics.events, config.topics.dlq) == ("events", "d")


def test_each_slot_is_a_static_group_member_under_its_own_id(tmp_path: Path) -> None:
    environments = [slot_environment("g", i) for i in range(3)]
    ids = [environment[GROUP_INSTANCE_ENV] for environment in environments]
    assert len(set(ids)) == 3
    assert slot_environment("g", 1) == environments[1]
    config = tmp_path / "lakecast.yaml"
    config.write_text("kafka: {}\n")
    assert load_settings(config, environ=environments[2]).kafka.group_instance_id == ids[2]


def test_a_child_that_served_a_while_is_started_again_at_once_in_its_slot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(processes, "MIN_UPTIME_S", 0.0)
    monkeypatch.setattr(processes, "RESTART_BACKOFF_S", 60.0)  # would stall the test if taken
    seen = tmp_path / "seen"
    script = (
        "import os, sys; "
        f"open({str(seen)!r}, 'a').write(os.environ[{GROUP_INSTANCE_ENV!r}] + '\\n'); "
        "sys.exit(3)"
    )
    workers = WorkerProcesses([[sys.executable, "-c", script]], [slot_environment("g", 0)])
    stop = threading.Event()

    def stop_after_a_restart() -> None:
        while not (seen.is_file() and len(seen.read_text().splitlines()) >= 2):
            threading.Event().wait(0.05)
        stop.set()

    watcher = threading.Thread(target=stop_after_a_restart, daemon=True)
    watcher.start()
    workers.start()
    report = workers.supervise(stop)
    watcher.join(timeout=1)
    lines = seen.read_text().splitlines()
    assert report.restarts >= 1
    assert set(lines) == {slot_environment("g", 0)[GROUP_INSTANCE_ENV]}
