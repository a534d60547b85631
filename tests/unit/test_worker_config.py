"""The worker's settings: one loop config from the ``serving:`` section, overrides validated."""

from __future__ import annotations

import sys

import pytest

from lakecast.config import LoopSettings, ServingSettings, Settings
from lakecast.errors import ConfigError
from lakecast.serving.worker_config import WorkerConfig, WorkerOptions, worker_command


def test_the_loop_defaults_are_the_serving_sections() -> None:
    assert ServingSettings().loop == LoopSettings()
    assert (LoopSettings().max_batch, LoopSettings().max_wait_ms) == (2000, 50)


def test_an_override_is_validated_as_the_config_file_is() -> None:
    with pytest.raises(ConfigError, match=r"--max-batch: .*greater than or equal to 1"):
        WorkerConfig.from_settings(Settings(), WorkerOptions(max_batch=0))
    with pytest.raises(ConfigError, match=r"--delivery: .*'twice'"):
        WorkerOptions.parse(delivery="twice")


def test_options_go_to_a_child_as_the_flags_they_came_from() -> None:
    options = WorkerOptions(model="m@champion", max_wait_ms=7, events_topic="ev")
    argv = worker_command(options, processes=1, metrics_port=0)
    assert argv[:5] == [sys.executable, "-m", "lakecast.cli.main", "stream", "worker"]
    assert argv[5:] == [
        "--model", "m@champion", "--max-wait-ms", "7", "--topic", "ev",
        "--processes", "1", "--metrics-port", "0",
    ]  # fmt: skip
    config = WorkerConfig.from_settings(Settings(), options)
    assert (config.serving.model, config.loop.max_wait_ms, config.topics.events) == (
        "m@champion",
        7,
        "ev",
    )
