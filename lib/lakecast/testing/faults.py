"""Fault campaigns on the streaming path: kill real workers, restart a real broker, count.

Shared by ``benchmarks/faults.py`` (20 worker kills, 5 broker restarts) and the short
``tests/e2e/test_fault_campaign.py``. A trial runs a group of ``inference_worker.py``
processes on fresh uuid-named topics, feeds them a paced load, injects one fault at a random
moment, and then reads ``predictions`` and ``events.dlq`` back (``read_committed``): every
event id must appear exactly once, so ``lost`` and ``duplicated`` are counts.

The stall of a trial is the longest gap, after the fault, between two committed outputs of
one input partition, as a ``read_committed`` reader saw them arrive; the worst partition is
the trial's stall (those of the killed worker, or all of them while the broker is away).
"""

from __future__ import annotations

import random
import signal
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import orjson

from lakecast.kafka.groups import wait_for_stable_members
from lakecast.local.stopping import stop_processes
from lakecast.testing.events import event_payload
from lakecast.testing.kafka import read_committed
from lakecast.testing.traffic import OutputWatch, PacedLoad, event_id_of, input_partition
from lakecast.testing.workers import (
    WORKER_STOP_S,
    create_run_topics,
    script_command,
    worker_env,
    worker_options,
)

if TYPE_CHECKING:
    from lakecast.local.broker import LocalBroker

PARTITIONS = 3
WORKER_START_TIMEOUT_S = 180.0
DRAIN_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class TrialResult:
    """What one trial put in and got out, and how long output stalled after the fault."""

    fault: str  # "kill -9 w1", "broker kill -9"
    events: int
    lost: int
    duplicated: int
    stall_s: float
    latency_p50_s: float
    latency_max_s: float
    downtime_s: float | None = None  # how long the broker was away (broker trials)
    # From the kill until the restarted worker was ready to serve (its log says so); None
    # when it never was before the trial ended (the survivor took its partitions over).
    restart_s: float | None = None
    unasked_exits: int = 0  # workers that exited on their own (and were started again)
    # For a trial that lost or doubled: the same counts from a second, independent read of the
    # outputs after the trial (a fresh read_committed consumer), so that a fault of the watch
    # is told from one of the workers; and the group, whose workers' logs name it.
    reread_lost: int | None = None
    reread_duplicated: int | None = None
    group: str | None = None

    @property
    def clean(self) -> bool:
        return self.lost == 0 and self.duplicated == 0


@dataclass
class WorkerGroup:
    """Worker processes of one trial: fresh topics, one group, stable slots ``w0, w1, ...``.

    A slot keeps its transactional id and source id across restarts, as the supervisor of
    ``lakecast stream worker --processes N`` does (:mod:`lakecast.serving.processes`).
    """

    bootstrap: str
    lake: Mapping[str, str]
    logs: Path
    partitions: int = PARTITIONS
    env: Mapping[str, str] = field(default_factory=dict)  # LAKECAST__... overrides
    # As the supervisor: a transactional id and a static group member id per slot (False:
    # a unique transactional id per process, a dynamic member; for before/after figures).
    stable_ids: bool = True
    static_membership: bool = True
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    slots: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    log_paths: dict[str, Path] = field(default_factory=dict)
    started: int = 0

    def __post_init__(self) -> None:
        self.group = f"faults-{self.run}"
        self.topics = create_run_topics(self.bootstrap, self.run, self.partitions)

    def start(self, slot: str) -> subprocess.Popen[bytes]:
        """Start (or start again) the worker of ``slot``; its output goes to a log file."""
        options = worker_options(self.lake, self.topics, self.group, sample_interval_s=5)
        slot_ids = {"source_id": slot}
        if self.stable_ids:
            slot_ids["transactional_id"] = f"{self.group}-{slot}"
        command = script_command(options.model_copy(update=slot_ids))
        env = worker_env(self.bootstrap, self.partitions, self.env)
        if self.static_membership:
            env["LAKECAST__KAFKA__GROUP_INSTANCE_ID"] = f"{self.group}-{slot}"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.log_paths[slot] = self.logs / f"{self.group}-{slot}-{self.started}.log"
        with self.log_paths[slot].open("wb") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.started += 1
        self.slots[slot] = process
        return process

    def ready_at(self, slot: str) -> float | None:
        """When the current worker of ``slot`` logged that it serves (epoch seconds)."""
        from datetime import datetime

        for line in self.log_paths[slot].read_bytes().splitlines():
            if b'"lakecast.serving.worker"' in line and b" serving " in line:
                return datetime.fromisoformat(orjson.loads(line)["ts"]).timestamp()
        return None

    def kill(self, slot: str) -> None:
        process = self.slots[slot]
        process.send_signal(signal.SIGKILL)
        process.wait()

    def restart_exited(self) -> int:
        """Start again every worker that exited on its own (a supervisor's job); how many."""
        exited = [slot for slot, process in self.slots.items() if process.poll() is not None]
        for slot in exited:
            self.start(slot)
        return len(exited)

    def stop(self) -> None:
        stop_processes(self.slots.values(), WORKER_STOP_S)


@dataclass(frozen=True)
class Load:
    """How a trial is driven: the rate, how long before and after the fault."""

    rate: int = 1_500
    warmup_s: tuple[float, float] = (3.0, 8.0)  # the fault comes at a random moment in here
    after_s: float = 12.0  # load goes on this long after the fault (or the broker's return)
    workers: int = 2


def _measure(
    fault: str,
    load: PacedLoad,
    watch: OutputWatch,
    partitions: int,
    fault_at: float,
    **extra: float | int | None,
) -> TrialResult:
    sent = len(load.sent_at)
    counts = Counter(event_id for _, event_id in watch.arrivals)
    expected = {f"e-{i}" for i in range(sent)}
    lost = len(expected - counts.keys())
    duplicated = sum(n - 1 for n in counts.values() if n > 1) + sum(
        n for event_id, n in counts.items() if event_id not in expected
    )
    first: dict[str, float] = {}
    for at, event_id in watch.arrivals:
        first.setdefault(event_id, at)
    per_partition: dict[int, list[float]] = {}
    latencies = []
    for event_id, at in first.items():
        i = int(event_id[2:])
        if i >= sent:
            continue
        key, _ = event_payload(i)
        per_partition.setdefault(input_partition(key, partitions), []).append(at)
        latencies.append(at - load.sent_at[i])
    stall = 0.0
    for arrivals in per_partition.values():
        times = np.sort(np.asarray(arrivals))
        gaps = np.diff(times)[times[1:] > fault_at]
        if gaps.size:
            stall = max(stall, float(gaps.max()))
    lat = np.asarray(latencies) if latencies else np.zeros(1)
    return TrialResult(
        fault=fault,
        events=sent,
        lost=lost,
        duplicated=duplicated,
        stall_s=stall,
        latency_p50_s=float(np.percentile(lat, 50)),
        latency_max_s=float(lat.max()),
        **extra,  # type: ignore[arg-type]
    )


def _confirmed(trial: TrialResult, bootstrap: str, group: WorkerGroup, sent: int) -> TrialResult:
    """``trial``, with the lost and doubled counted again from a fresh read if it was not clean."""
    if trial.clean:
        return trial
    counts: Counter[str] = Counter()
    outputs = (group.topics["predictions"], group.topics["dlq"])
    for topic in outputs:
        for record in read_committed(bootstrap, topic, at_least=0, quiet_s=3.0):
            counts[event_id_of(topic, record.value, outputs)] += 1
    expected = {f"e-{i}" for i in range(sent)}
    return replace(
        trial,
        reread_lost=len(expected - counts.keys()),
        reread_duplicated=sum(n - 1 for n in counts.values() if n > 1)
        + sum(n for event_id, n in counts.items() if event_id not in expected),
        group=group.group,
    )


def _drain(group: WorkerGroup, load: PacedLoad, watch: OutputWatch) -> int:
    """Stop the load, wait until every event has an output (restarting exited workers)."""
    sent = load.stop()
    unasked = 0
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while watch.count() < sent and time.monotonic() < deadline:
        unasked += group.restart_exited()
        time.sleep(0.5)
    time.sleep(1.0)  # a duplicate would come with the last batches
    return unasked


def _tear_down(group: WorkerGroup, paced: PacedLoad, watch: OutputWatch) -> None:
    """Stop the load, the workers and the reader; the workers even if the load fails."""
    try:
        if paced.is_alive():
            paced.stop()
    finally:
        try:
            group.stop()
        finally:
            if watch.is_alive():
                watch.stop()


def worker_kill_trial(
    bootstrap: str,
    lake: Mapping[str, str],
    logs: Path,
    *,
    load: Load | None = None,
    restart_after_s: float = 0.0,
    env: Mapping[str, str] | None = None,
    stable_ids: bool = True,
    static_membership: bool = True,
    rng: random.Random | None = None,
) -> TrialResult:
    """kill -9 one of ``load.workers`` workers at a random moment under load; restart it.

    Args:
        restart_after_s: how long the slot stays empty before its worker is started again.
        env: ``LAKECAST__...`` overrides for the workers (settings under test).
    """
    load = load or Load()
    rng = rng or random.Random()  # noqa: S311 - a random moment, not a secret
    group = WorkerGroup(
        bootstrap,
        lake,
        logs,
        env=dict(env or {}),
        stable_ids=stable_ids,
        static_membership=static_membership,
    )
    slots = [f"w{i}" for i in range(load.workers)]
    watch = OutputWatch(bootstrap, group.topics["predictions"], group.topics["dlq"])
    paced = PacedLoad(bootstrap, group.topics["events"], load.rate)
    try:
        for slot in slots:
            group.start(slot)
        wait_for_stable_members(
            bootstrap, group.group, load.workers, timeout_s=WORKER_START_TIMEOUT_S
        )
        watch.start()
        paced.start()
        time.sleep(rng.uniform(*load.warmup_s))
        victim = rng.choice(slots)
        fault_at, killed_at = time.monotonic(), time.time()
        group.kill(victim)
        time.sleep(restart_after_s)
        group.start(victim)
        time.sleep(max(0.0, load.after_s - restart_after_s))
        unasked = _drain(group, paced, watch)
        ready = group.ready_at(victim)
    finally:
        _tear_down(group, paced, watch)
    trial = _measure(
        f"kill -9 {victim}",
        paced,
        watch,
        group.partitions,
        fault_at,
        unasked_exits=unasked,
        restart_s=None if ready is None else ready - killed_at,
    )
    return _confirmed(trial, bootstrap, group, len(paced.sent_at))


def broker_restart_trial(
    broker: LocalBroker,
    lake: Mapping[str, str],
    logs: Path,
    *,
    load: Load | None = None,
    crash: bool = True,
    down_s: float = 5.0,
    env: Mapping[str, str] | None = None,
    rng: random.Random | None = None,
) -> TrialResult:
    """Stop ``broker`` at a random moment under load, leave it down ``down_s``, then start it
    again on the same ports and log dir.

    Args:
        crash: kill -9 (as a crash) rather than SIGTERM (a clean shutdown).
    """
    load = load or Load()
    rng = rng or random.Random()  # noqa: S311 - a random moment, not a secret
    bootstrap = broker.bootstrap_servers
    group = WorkerGroup(bootstrap, lake, logs, env=dict(env or {}))
    watch = OutputWatch(bootstrap, group.topics["predictions"], group.topics["dlq"])
    paced = PacedLoad(bootstrap, group.topics["events"], load.rate)
    try:
        for i in range(load.workers):
            group.start(f"w{i}")
        wait_for_stable_members(
            bootstrap, group.group, load.workers, timeout_s=WORKER_START_TIMEOUT_S
        )
        watch.start()
        paced.start()
        time.sleep(rng.uniform(*load.warmup_s))
        fault_at = time.monotonic()
        broker.kill() if crash else broker.stop()
        time.sleep(down_s)
        broker.start()
        downtime = time.monotonic() - fault_at
        unasked = group.restart_exited()
        time.sleep(load.after_s)
        unasked += _drain(group, paced, watch)
    finally:
        try:
            if not broker.is_running():
                broker.start()
        finally:
            _tear_down(group, paced, watch)
    trial = _measure(
        "broker kill -9" if crash else "broker SIGTERM",
        paced,
        watch,
        group.partitions,
        fault_at,
        downtime_s=downtime,
        unasked_exits=unasked,
    )
    return _confirmed(trial, bootstrap, group, len(paced.sent_at))


@dataclass
class Campaign:
    """The trials of one kind and their totals."""

    name: str
    trials: list[TrialResult] = field(default_factory=list)

    @property
    def events(self) -> int:
        return sum(t.events for t in self.trials)

    @property
    def lost(self) -> int:
        return sum(t.lost for t in self.trials)

    @property
    def duplicated(self) -> int:
        return sum(t.duplicated for t in self.trials)

    def stalls(self) -> Sequence[float]:
        return [t.stall_s for t in self.trials]

    def worst_stall_s(self) -> float | None:
        return max(self.stalls(), default=None)

    def p99_stall_s(self) -> float | None:
        stalls = self.stalls()
        return float(np.percentile(stalls, 99)) if stalls else None


def scratch_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
