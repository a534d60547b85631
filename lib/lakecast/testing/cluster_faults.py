"""Fault trials on a local multi-node Kafka cluster (:mod:`lakecast.local.cluster`).

The trials of :mod:`lakecast.testing.faults` (a group of real exactly-once workers on fresh
topics, a paced load, every event counted once among the committed predictions and dead
letters, the stall measured), with the faults a replicated cluster is built to survive:

- ``leader``: kill -9 the node that leads a partition of the run's ``events`` topic;
- ``coordinator``: kill -9 the node that coordinates a worker's transactions;
- ``rolling``: stop (SIGTERM) and start each node in turn, waiting after each until every
  partition is fully replicated again, as an operator's rolling restart does.

A killed node is launched again after ``down_s`` while the load goes on, and the trial ends
only when it answers again and every partition is fully replicated, so the cluster is whole
for the next trial. A worker that exits is started again, as a supervisor would, and counted
(``unasked_exits``): the tests require none.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Literal

from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from lakecast.kafka.groups import wait_for_stable_members
from lakecast.local.cluster import LocalKafkaCluster
from lakecast.testing.faults import (
    WORKER_START_TIMEOUT_S,
    Load,
    TrialResult,
    WorkerGroup,
    _confirmed,
    _drain,
    _measure,
    _tear_down,
)
from lakecast.testing.traffic import OutputWatch, PacedLoad

ClusterFault = Literal["leader", "coordinator", "rolling"]
CLUSTER_FAULTS: tuple[ClusterFault, ...] = ("leader", "coordinator", "rolling")
REPLICATED_TIMEOUT_S = 120.0


def temporary_cluster(state: Path, nodes: int = 3) -> LocalKafkaCluster:
    """A :class:`~lakecast.local.cluster.LocalKafkaCluster` of its own under ``state``, on
    free ports, replicated as the settings say (not started)."""
    from lakecast.config import settings
    from lakecast.local.jars import resolve_jars

    config = settings()
    return LocalKafkaCluster(
        state,
        nodes=nodes,
        classpath=resolve_jars(config).kafka_classpath,
        replication=config.kafka.replication,
    )


def _admin(cluster: LocalKafkaCluster) -> KafkaAdminClient:
    return KafkaAdminClient(
        bootstrap_servers=cluster.bootstrap_servers,
        client_id="lakecast-cluster-faults",
        reconnect_backoff_max_ms=1_000,
    )


def partition_leader(cluster: LocalKafkaCluster, topic: str, partition: int) -> int:
    """The node id that leads ``topic``'s ``partition`` now."""
    admin = _admin(cluster)
    try:
        (described,) = admin.describe_topics([topic])
    finally:
        admin.close()
    for row in described["partitions"]:
        if row["partition_index"] == partition:
            return int(row["leader_id"])
    msg = f"topic {topic!r} has no partition {partition}"
    raise LookupError(msg)


def transaction_coordinator(cluster: LocalKafkaCluster, transactional_id: str) -> int:
    """The node id that coordinates ``transactional_id``'s transactions (FindCoordinator)."""
    admin = _admin(cluster)
    try:
        return int(admin.describe_transactions([transactional_id])[transactional_id].coordinator_id)
    finally:
        admin.close()


def under_replicated(cluster: LocalKafkaCluster) -> list[str]:
    """``topic/partition`` of every partition (internal ones too) whose ISR lacks a replica."""
    admin = _admin(cluster)
    try:
        topics = admin.describe_topics()
    finally:
        admin.close()
    return [
        f"{topic['name']}/{row['partition_index']}"
        for topic in topics
        for row in topic["partitions"]
        if set(row["isr_nodes"]) != set(row["replica_nodes"]) or row["leader_id"] < 0
    ]


def wait_fully_replicated(
    cluster: LocalKafkaCluster, timeout_s: float = REPLICATED_TIMEOUT_S
) -> None:
    """Wait until every partition of the cluster has all its replicas in sync.

    Raises:
        TimeoutError: some are not after ``timeout_s`` (named in the message).
    """
    deadline = time.monotonic() + timeout_s
    lagging: list[str] = ["(not asked yet)"]
    while time.monotonic() < deadline:
        try:
            lagging = under_replicated(cluster)
        except KafkaError as exc:
            lagging = [repr(exc)]
        if not lagging:
            return
        time.sleep(0.5)
    msg = f"under-replicated after {timeout_s:g} s: {', '.join(sorted(lagging)[:10])}"
    raise TimeoutError(msg)


def _kill_and_relaunch(cluster: LocalKafkaCluster, node_id: int, down_s: float) -> None:
    """kill -9 the node, and launch it again after ``down_s`` without waiting for it: the
    trial's load goes on while it starts (tens of seconds on a small machine)."""
    node = cluster.node(node_id)
    node.kill()
    time.sleep(down_s)
    node.launch()


def _victim(
    cluster: LocalKafkaCluster,
    fault: ClusterFault,
    group: WorkerGroup,
    slots: list[str],
    rng: random.Random,
) -> tuple[int, str]:
    """The node to kill for ``fault`` now, and the fault's name."""
    if fault == "leader":
        partition = rng.randrange(group.partitions)
        victim = partition_leader(cluster, group.topics["events"], partition)
        return victim, f"kill -9 node {victim}, leader of events/{partition}"
    slot = rng.choice(slots)
    # A stable id per slot (WorkerGroup): the slot's transactional id is "<group>-<slot>".
    victim = transaction_coordinator(cluster, f"{group.group}-{slot}")
    return victim, f"kill -9 node {victim}, transaction coordinator of {slot}"


def _rolling_restart(cluster: LocalKafkaCluster) -> None:
    for node in cluster.nodes:
        node.stop()
        node.start()
        wait_fully_replicated(cluster)


def cluster_trial(
    cluster: LocalKafkaCluster,
    fault: ClusterFault,
    lake: Mapping[str, str],
    logs: Path,
    *,
    load: Load | None = None,
    down_s: float = 3.0,
    env: Mapping[str, str] | None = None,
    rng: random.Random | None = None,
) -> TrialResult:
    """Run ``load.workers`` exactly-once workers under a paced load on ``cluster`` and inject
    ``fault`` at a random moment; what came out, counted.

    Args:
        down_s: how long a killed node stays down before it is started again.
        env: ``LAKECAST__...`` overrides for the workers.
    """
    load = load or Load()
    rng = rng or random.Random()  # noqa: S311 - a random moment, not a secret
    bootstrap = cluster.bootstrap_servers
    group = WorkerGroup(bootstrap, lake, logs, env=dict(env or {}))
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
        if fault == "rolling":
            name = f"rolling restart of nodes {cluster.node_ids()}"
            fault_at = time.monotonic()
            _rolling_restart(cluster)
        else:
            victim, name = _victim(cluster, fault, group, slots, rng)
            fault_at = time.monotonic()
            _kill_and_relaunch(cluster, victim, down_s)
        downtime = time.monotonic() - fault_at
        unasked = group.restart_exited()
        time.sleep(load.after_s)
        unasked += _drain(group, paced, watch)
    finally:
        try:
            cluster.start()  # waits for a relaunched node; starts one a failure left down
            wait_fully_replicated(cluster)
        finally:
            _tear_down(group, paced, watch)
    trial = _measure(
        name,
        paced,
        watch,
        group.partitions,
        fault_at,
        downtime_s=downtime,
        unasked_exits=unasked,
    )
    return replace(_confirmed(trial, bootstrap, group, len(paced.sent_at)), group=group.group)
