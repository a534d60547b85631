"""The streaming fault campaigns, short: two worker kills and one broker restart, counted.

The same trials as ``benchmarks/faults.py`` (:mod:`lakecast.testing.faults`), fewer and
shorter: kill -9 one of two workers at a random moment under a paced load and start it again
in its slot; stop the broker under load (SIGTERM, and kill -9: a known failure, see its
mark) and start it again on the same ports and log dir.
Every event id must come out exactly once among the committed predictions and dead letters.
The stalls are printed, never asserted: a test does not time the machine.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from lakecast.local.broker import LocalBroker
from lakecast.testing.brokers import temporary_broker
from lakecast.testing.faults import (
    Load,
    TrialResult,
    broker_restart_trial,
    worker_kill_trial,
)
from lakecast.testing.models import served_lake

LOAD = Load(rate=1_000, warmup_s=(2.0, 4.0), after_s=5.0)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return served_lake(tmp_path_factory.mktemp("fault-campaign"))


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A broker for the restart trial alone: restarting it must not disturb the session's."""
    broker = temporary_broker(tmp_path / "broker")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def check(trial: TrialResult) -> None:
    print(
        f"{trial.fault}: {trial.events} events, lost {trial.lost}, duplicated "
        f"{trial.duplicated}, stall {trial.stall_s:.1f} s, latency p50 "
        f"{trial.latency_p50_s:.2f} s max {trial.latency_max_s:.1f} s"
    )
    assert trial.events > 0
    assert (trial.lost, trial.duplicated) == (0, 0)


def test_two_workers_killed_in_turn_lose_and_double_nothing(
    bootstrap: str, lake: dict[str, str], tmp_path: Path
) -> None:
    rng = random.Random(13)
    for _ in range(2):
        check(worker_kill_trial(bootstrap, lake, tmp_path / "logs", load=LOAD, rng=rng))


@pytest.mark.parametrize(
    "crash",
    [pytest.param(False, id="sigterm"), pytest.param(True, id="kill-9")],
)
def test_a_broker_stopped_and_started_again_loses_and_doubles_nothing(
    own_broker: LocalBroker, lake: dict[str, str], tmp_path: Path, crash: bool
) -> None:
    trial = broker_restart_trial(
        own_broker,
        lake,
        tmp_path / "logs",
        load=LOAD,
        crash=crash,
        down_s=2.0,
        rng=random.Random(13),
    )
    assert trial.downtime_s is not None
    check(trial)
