"""``lakecast stream worker --processes 2``: two worker processes in one group, stopped cleanly.

The real CLI runs as a subprocess against the session broker. Once the coordinator reports both
children as members of the group, events are produced; every event must get exactly one
committed prediction and both children must have served some. Then the supervisor is stopped
the two ways a user stops it (SIGTERM to it, as systemd or ``kill`` does; SIGINT to its whole
process group, as Ctrl-C in a terminal does): every child must exit with status 0, the
supervisor too, and the group must be left empty at once, not after a session timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import psutil
import pytest

from lakecast.kafka.groups import describe_group
from lakecast.kafka.serde import decode_metric
from lakecast.serving.processes import slot_source_id
from lakecast.testing.clock import wait_for
from lakecast.testing.events import synthetic_payloads
from lakecast.testing.kafka import produce, read_committed
from lakecast.testing.models import served_lake
from tests.e2e.worker_fixtures import Stream

PROCESSES = 2
PARTITIONS = 4
EVENTS = 6_000
JOIN_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 90.0


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return served_lake(tmp_path_factory.mktemp("processes"))


@pytest.fixture
def stream(bootstrap: str, lake: dict[str, str], tmp_path: Path) -> Iterator[Stream]:
    made = Stream(bootstrap, lake, tmp_path, partitions=PARTITIONS)
    yield made
    made.stop_all()


def cli_command(stream: Stream, processes: int) -> list[str]:
    """The installed ``lakecast`` console script (the module, where it is not installed)."""
    script = Path(sys.executable).with_name("lakecast")
    entry = [str(script)] if script.exists() else [sys.executable, "-m", "lakecast.cli.main"]
    options = [*stream.worker_options().argv(), "--metrics-port", "0"]
    return [*entry, "stream", "worker", "--processes", str(processes), *options]


def records_in_by_source(stream: Stream) -> Counter[str]:
    """Records each worker reported in its metric samples so far."""
    records = read_committed(stream.bootstrap, stream.topics["metrics"], at_least=0, quiet_s=0.5)
    counts: Counter[str] = Counter()
    for record in records:
        sample = decode_metric(record.value)
        if sample["kind"] == "sample":
            counts[sample["source"]] += sample["records_in"]
    return counts


def exit_statuses(log: Path) -> dict[int, int]:
    """Per worker slot, the exit status the supervisor logged when it stopped the child."""
    statuses: dict[int, int] = {}
    for line in log.read_bytes().splitlines():
        if not line.startswith(b"{"):
            continue
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if "exit_status" in entry:
            statuses[int(entry["worker"])] = int(entry["exit_status"])
    return statuses


@pytest.mark.parametrize("stop_by", ["sigterm_to_supervisor", "sigint_to_process_group"])
def test_processes_join_one_group_score_each_event_once_and_stop_cleanly(
    stream: Stream, stop_by: str
) -> None:
    # A session of its own, so that the process group signalled below is the CLI's alone.
    cli = stream.start(cli_command(stream, PROCESSES), "cli", start_new_session=True)
    log = stream.log_path("cli", 0)
    slots = tuple(sorted(slot_source_id(index) for index in range(PROCESSES)))

    def joined() -> bool:
        if cli.poll() is not None:
            pytest.fail(f"the CLI exited with {cli.returncode}; see {log}")
        view = describe_group(stream.bootstrap, stream.group)
        return view.state == "Stable" and view.client_ids == slots

    wait_for(joined, timeout_s=JOIN_TIMEOUT_S, what=f"{slots} to join {stream.group}", every_s=0.5)
    children = psutil.Process(cli.pid).children()
    assert len(children) == PROCESSES
    for child in children:
        command = child.cmdline()
        assert command[command.index("--processes") + 1] == "1"

    produce(stream.bootstrap, stream.topics["events"], synthetic_payloads(EVENTS))
    stream.wait_committed(EVENTS)
    expected = Counter(f"e-{i}" for i in range(EVENTS))
    sent = read_committed(stream.bootstrap, stream.topics["events"], at_least=EVENTS)
    assert Counter(orjson.loads(r.value)["event_id"] for r in sent) == expected
    assert stream.prediction_counts(EVENTS) == expected

    def both_served() -> bool:
        served = records_in_by_source(stream)
        return sum(served.values()) >= EVENTS and all(served[slot] > 0 for slot in slots)

    wait_for(both_served, timeout_s=60, what="both workers to report their records", every_s=1)

    if stop_by == "sigterm_to_supervisor":
        cli.send_signal(signal.SIGTERM)
    else:
        os.killpg(cli.pid, signal.SIGINT)
    try:
        status = cli.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the CLI did not stop in {STOP_TIMEOUT_S:g} s; see {log}")
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], f"children still running after the supervisor exited: {alive}"
    assert exit_statuses(log) == dict.fromkeys(range(PROCESSES), 0), f"see {log}"
    assert status == 0, f"see {log}"
    view = describe_group(stream.bootstrap, stream.group)
    assert (view.state, view.members) == ("Empty", 0)
