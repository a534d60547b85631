"""Worker processes under faults, 50,000 events each: none lost, none scored twice.

Real processes (``python streaming/inference_worker.py``) against a real broker: a worker
killed with SIGKILL mid-stream and started again; the broker restarted mid-stream (its own,
dedicated broker); a second worker joining half-way. Afterwards every event id appears exactly
once among the committed predictions (``read_committed``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient, NewTopic

from lakecast.config import PROJECT_ROOT
from lakecast.kafka.serde import decode_metric
from lakecast.serving.testing import (
    committed_total,
    event_payloads,
    produce,
    read_committed,
    register_model,
    wait_for,
    write_snapshot,
)

EVENTS = 50_000
PARTITIONS = 3
TIMEOUT_S = 240.0


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("faults")
    paths = {"registry": str(root / "registry"), "snapshot": str(root / "entity_features")}
    register_model(paths["registry"])
    write_snapshot(paths["snapshot"])
    return paths


class Stream:
    """The topics and group of one test, and the worker processes it starts."""

    def __init__(self, bootstrap: str, lake: dict[str, str], logs: Path) -> None:
        self.bootstrap = bootstrap
        self.lake = lake
        self.logs = logs
        run = uuid.uuid4().hex[:8]
        self.group = f"workers-{run}"
        self.topics = {
            "events": f"events-{run}",
            "predictions": f"predictions-{run}",
            "dlq": f"dlq-{run}",
            "metrics": f"metrics-{run}",
        }
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics(
            [
                NewTopic(self.topics["events"], PARTITIONS, 1),
                NewTopic(self.topics["predictions"], PARTITIONS, 1),
                NewTopic(self.topics["dlq"], 1, 1),
                NewTopic(self.topics["metrics"], 1, 1),
            ]
        )
        admin.close()
        self.processes: list[subprocess.Popen[bytes]] = []

    def start_worker(self, name: str) -> subprocess.Popen[bytes]:
        command = [
            sys.executable,
            str(PROJECT_ROOT / "streaming" / "inference_worker.py"),
            *("--registry", self.lake["registry"], "--entity-features", self.lake["snapshot"]),
            *("--topic", self.topics["events"], "--predictions-topic", self.topics["predictions"]),
            *("--dlq-topic", self.topics["dlq"], "--metrics-topic", self.topics["metrics"]),
            *("--group", self.group, "--metrics-port", "0", "--sample-interval", "1"),
            # A stable id per worker slot: a restarted worker fences its killed predecessor
            # and aborts the transaction it left open at once.
            *("--transactional-id", f"{self.group}-{name}", "--source-id", name),
        ]
        env = {
            **os.environ,
            "LAKECAST__KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "LAKECAST__KAFKA__PARTITIONS": str(PARTITIONS),
        }
        log = (self.logs / f"{name}-{len(self.processes)}.log").open("wb")
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def committed(self) -> int:
        return committed_total(self.bootstrap, self.group, self.topics["events"])

    def wait_committed(self, at_least: int, *, restart: Callable[[], Any] | None = None) -> None:
        def reached() -> bool:
            for process in self.processes[-1:]:
                if process.poll() not in (None, 0) and restart is None:
                    pytest.fail(f"worker exited with {process.returncode}; see {self.logs}")
            if restart is not None and self.processes[-1].poll() is not None:
                restart()
            return self.committed() >= at_least

        wait_for(reached, timeout_s=TIMEOUT_S, what=f"{at_least} committed offsets", every_s=0.5)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def prediction_counts(self) -> Counter[str]:
        import orjson

        records = read_committed(
            self.bootstrap, self.topics["predictions"], at_least=EVENTS, timeout_s=120
        )
        return Counter(orjson.loads(r.value)["event_id"] for r in records)


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
    produce(bootstrap, stream.topics["events"], event_payloads(EVENTS))
    first = stream.start_worker("w0")
    stream.wait_committed(EVENTS // 4)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = stream.committed()
    assert killed_at < EVENTS, "the worker should die mid-stream"

    stream.start_worker("w0")
    stream.wait_committed(EVENTS)
    stream.stop_all()
    assert stream.prediction_counts() == EXPECTED


@pytest.fixture
def own_broker() -> Iterator[Any]:
    """A broker for this test alone: restarting it must not disturb the session's."""
    from lakecast.config import settings
    from lakecast.local.broker import LocalBroker
    from lakecast.local.jars import resolve_jars
    from lakecast.local.ports import free_port

    with tempfile.TemporaryDirectory(prefix="lakecast-restart-") as state:
        broker = LocalBroker(
            Path(state),
            port=free_port(),
            controller_port=free_port(),
            classpath=resolve_jars(settings()).kafka_classpath,
        )
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
    produce(bootstrap, stream.topics["events"], event_payloads(EVENTS))
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
    assert stream.prediction_counts() == EXPECTED
    assert len(restarts) <= 1, f"the worker exited {restarts} after the broker came back"


def _group_members(bootstrap: str, group: str) -> int:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="lakecast-test-members")
    try:
        info = admin.describe_groups([group]).get(group) or {}
    finally:
        admin.close()
    state = info.get("group_state", info.get("state"))
    return len(info.get("members") or []) if state == "Stable" else 0


def test_a_second_worker_joining_half_way_shares_without_loss_or_duplicates(
    bootstrap: str, stream_factory: Callable[[str], Stream]
) -> None:
    stream = stream_factory(bootstrap)
    half = EVENTS // 2
    produce(bootstrap, stream.topics["events"], event_payloads(half))
    stream.start_worker("w0")
    stream.wait_committed(half // 5)
    stream.start_worker("w1")
    # The second half is produced once both are members, so the joiner surely gets records to
    # serve; how far w0 got by then (all of the first half, on a quiet machine) does not matter.
    wait_for(
        lambda: _group_members(bootstrap, stream.group) >= 2,
        timeout_s=120,
        what="the second worker to join the group",
        every_s=0.5,
    )
    produce(bootstrap, stream.topics["events"], event_payloads(EVENTS - half, start=half))
    stream.wait_committed(EVENTS)
    stream.stop_all()
    assert all(p.returncode == 0 for p in stream.processes)
    assert stream.prediction_counts() == EXPECTED

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
