"""Exactly-once streaming on a three-node KRaft cluster that loses nodes (issue 16, Kafka half).

One cluster for the module, started as a user would (``lakecast local up --brokers 3`` with a
state folder of its own) and stopped by ``lakecast local down``; not the session's single
broker. Each trial runs two real exactly-once workers on fresh topics (three replicas,
``min.insync.replicas`` 2) under a paced load: kill -9 the leader of an ``events`` partition,
kill -9 the node coordinating a worker's transactions, a rolling restart of all three nodes.
Every event id must come out exactly once among the committed predictions and dead letters
(counted from a read_committed reader), and no worker may exit. Stalls are printed, not
asserted: a test does not time the machine.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from lakecast.config import settings
from lakecast.local.cluster import LocalKafkaCluster
from lakecast.local.jars import resolve_jars
from lakecast.testing.cluster_faults import ClusterFault, cluster_trial
from lakecast.testing.faults import Load, TrialResult
from lakecast.testing.models import served_lake
from lakecast.testing.workers import create_run_topics

pytestmark = pytest.mark.cluster

NODES = 3
# Small counts: 250 events/s for the seconds around a kill (3-5k events a trial); the rolling
# restart lasts three node restarts (30-45 s each on the loaded 2-core machine), so its load
# is slower.
LOADS: dict[ClusterFault, Load] = {
    "leader": Load(rate=250, warmup_s=(3.0, 5.0), after_s=8.0),
    "coordinator": Load(rate=250, warmup_s=(3.0, 5.0), after_s=8.0),
    "rolling": Load(rate=40, warmup_s=(2.0, 3.0), after_s=3.0),
}


def _lakecast(state: Path, *args: str) -> str:
    env = {**os.environ, "LAKECAST__LOCAL__STATE_DIR": str(state)}
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lakecast")), "local", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"lakecast local {' '.join(args)}:\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaCluster]:
    """Three nodes started by ``lakecast local up --brokers 3``, stopped by ``local down``."""
    state = tmp_path_factory.mktemp("kafka-cluster-state")
    config = settings()
    cluster = LocalKafkaCluster(
        state / "kafka-cluster",
        nodes=NODES,
        classpath=resolve_jars(config).kafka_classpath,
        replication=config.kafka.replication,
    )
    try:
        print(_lakecast(state, "up", "--brokers", str(NODES)))
        yield cluster
    finally:
        # The nodes a trial restarted are this process's children: stopped (and reaped) here,
        # all at once, since `local down` in another process would wait on their zombies.
        cluster.stop()
        print(_lakecast(state, "down"))


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return served_lake(tmp_path_factory.mktemp("cluster-faults-lake"))


def test_local_up_starts_three_nodes_and_topics_get_three_replicas_two_in_sync(
    cluster: LocalKafkaCluster,
) -> None:
    nodes = cluster.status()
    assert [(node.node_id, node.alive) for node in nodes] == [(1, True), (2, True), (3, True)]
    assert len({node.port for node in nodes} | {node.controller_port for node in nodes}) == 6
    topics = create_run_topics(cluster.bootstrap_servers, "replication", partitions=3)
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers)
    try:
        described = {t["name"]: t for t in admin.describe_topics(list(topics.values()))}
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in topics.values()]
        )["topic"]
    finally:
        admin.close()
    for name in topics.values():
        assert {len(row["replica_nodes"]) for row in described[name]["partitions"]} == {3}, name
        assert configs[name]["min.insync.replicas"]["value"] == "2", name


def _check(trial: TrialResult) -> None:
    print(
        f"\n{trial.fault}: {trial.events} events, lost {trial.lost}, duplicated "
        f"{trial.duplicated}, stall {trial.stall_s:.1f} s, fault took "
        f"{trial.downtime_s or 0:.1f} s (kill to relaunch; rolling: all restarts), latency "
        f"p50 {trial.latency_p50_s:.2f} s max "
        f"{trial.latency_max_s:.1f} s, workers exited {trial.unasked_exits} (group {trial.group})"
    )
    assert trial.events > 0
    assert (trial.lost, trial.duplicated) == (0, 0)
    assert trial.unasked_exits == 0


@pytest.mark.parametrize("fault", ["leader", "coordinator", "rolling"])
def test_exactly_once_through_a_lost_node(
    cluster: LocalKafkaCluster,
    lake: dict[str, str],
    tmp_path: Path,
    fault: ClusterFault,
) -> None:
    trial = cluster_trial(
        cluster, fault, lake, tmp_path / "logs", load=LOADS[fault], rng=random.Random(16)
    )
    _check(trial)
    assert [node.alive for node in cluster.status()] == [True] * NODES
