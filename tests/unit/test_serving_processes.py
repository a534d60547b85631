"""``--processes N``: each child gets one process, its own port and a stable slot id."""

from __future__ import annotations

import sys

from lakecast.config import Settings
from lakecast.serving.processes import child_command, slot_transactional_id
from lakecast.serving.worker import WorkerConfig


def test_children_get_their_own_port_and_a_stable_transactional_id() -> None:
    commands = [child_command(i, ["--model", "purchase@champion"], 9101, "g") for i in range(3)]
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
    options = child_command(2, [], 0, "g")
    assert options[options.index("--metrics-port") + 1] == "0"


def test_worker_config_takes_the_serving_section_and_overrides() -> None:
    settings = Settings.model_validate(
        {
            "serving": {"max_batch": 64, "delivery": "at_least_once"},
            "kafka": {"topics": {"dlq": "d"}},
        }
    )
    config = WorkerConfig.from_settings(settings, max_wait_ms=7, events_topic=None)
    assert (config.max_batch, config.delivery, config.max_wait_ms) == (64, "at_least_once", 7)
    assert (config.events_topic, config.dlq_topic) == ("events", "d")
