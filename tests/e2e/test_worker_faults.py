"""Worker processes under faults, 50,000 events each: none lost, none scored twice.

Real processes (``python streaming/inference_worker.py``) against a real broker: a worker
killed with SIGKILL mid-stream and started again; the broker restarted mid-stream (its own,
dedicated broker); a second worker joining half-way. Afterwards every event id appears exactly
once among the committed predictions (``read_committed``).
"""

from __future__ import annotations

import signal
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lakecast.kafka.groups import stable_members
from lakecast.kafka.serde import decode_metric
from lakecast.testing.clock import wait_for
from lakecast.testing.events import synthetic_payloads
from lakecast.testing.kafka import produce, read_committed
from lakecast.testing.models import served_lake
from tests.e2e.worker_fixtures import Stream

EVENTS = 50_000


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return served_lake(tmp_path_factory.mktemp("faults"))


@pytest.fixture
def stream_factory(lake: dict[str, str], tmp_path: Path) -> Iterator[Callable[[str], Stream]]:
    made: list[Stream] = []

    def make(bootstrap: str) -> Stream:
        stream = Stream(bootstrap, lake, tmp_path)
        made.append(stream)
        return stream

    yield make
    for stream in made:
        stream.stop_all()


EXPECTED = Counter(f"e-{i}" for i in range(EVENTS))


def test_a_worker_killed_mid_stream_and_restarted_scores_every_event_once(
    bootstrap: str, stream_factory: Callable[[str], Stream]
) -> None:
    stream = stream_factory(bootstrap)
    produce(bootstrap, stream.topics["events"], synthetic_payloads(EVENTS))
    first = stream.start_worker("w0")
    stream.wait_committed(EVENTS // 4)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = stream.committed()
    assert killed_at < EVENTS, "the worker should die mid-stream"

    stream.start_worker("w0")
    stream.wait_committed(EVENTS)
    stream.stop_all()
    assert stream.prediction_counts(EVENTS) == EXPECTED


@pytest.fixture
def own_broker() -> Iterator[Any]:
    """A broker for this test alone: restarting it must not disturb the session's."""
    from lakecast.testing.brokers import temporary_broker

    with tempfile.TemporaryDirectory(prefix="lakecast-restart-") as state:
        broker = temporary_broker(Path(state))
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()


def test_a_broker_restart_mid_stream_loses_and_repeats_nothing(
    own_broker: Any, stream_factory: Callable[[str], Stream]
) -> None:
    bootstrap = own_broker.bootstrap_servers
    stream = stream_factory(bootstrap)
    produce(bootstrap, stream.topics["events"], synthetic_payloads(EVENTS))
    stream.start_worker("w0")
    stream.wait_committed(EVENTS // 4)
    own_broker.stop()
    own_broker.start()
    restarts: list[int] = []

    def restart() -> None:  # a supervisor's job, if the worker gave up while it was away
        restarts.append(stream.processes[-1].returncode)
        stream.start_worker("w0")

    stream.wait_committed(EVENTS, restart=restart)
    stream.stop_all()
    assert stream.prediction_counts(EVENTS) == EXPECTED
    assert len(restarts) <= 1, f"the worker exited {restarts} after the broker came back"


def test_a_second_worker_joining_half_way_shares_without_loss_or_duplicates(
    bootstrap: str, stream_factory: Callable[[str], Stream]
) -> None:
    stream = stream_factory(bootstrap)
    half = EVENTS // 2
    produce(bootstrap, stream.topics["events"], synthetic_payloads(half))
    stream.start_worker("w0")
    stream.wait_committed(half // 5)
    stream.start_worker("w1")
    # The second half is produced once both are members, so the joiner surely gets records to
    # serve; how far w0 got by then (all of the first half, on a quiet machine) does not matter.
    wait_for(
        lambda: stable_members(bootstrap, stream.group) >= 2,
        timeout_s=120,
        what="the second worker to join the group",
        every_s=0.5,
    )
    produce(bootstrap, stream.topics["events"], synthetic_payloads(EVENTS - half, start=half))
    stream.wait_committed(EVENTS)
    stream.stop_all()
    assert all(p.returncode == 0 for p in stream.processes)
    assert stream.prediction_counts(EVENTS) == EXPECTED

    samples = [
        decode_metric(r.value)
        for r in read_committed(bootstrap, stream.topics["metrics"], at_least=2, timeout_s=30)
    ]
    per_worker = Counter()
    for sample in samples:
        per_worker[sample["source"]] += sample["records_in"]
    assert sum(per_worker.values()) >= EVENTS
    assert per_worker["w0"] > 0
    assert per_worker["w1"] > 0, "the second worker should have taken partitions"
