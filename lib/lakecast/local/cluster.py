"""A local multi-node KRaft Apache Kafka cluster: ``lakecast local up --brokers 3``.

Every node runs both roles (``process.roles=broker,controller``): three JVMs rather than six on a
small machine, and still a quorum of three controllers that survives the loss of any one node,
as the partitions (three replicas, ``min.insync.replicas`` 2) do. The price is that a node killed
takes a controller with it, and when it was the active controller the quorum elects another
while its partitions fail over: the harder case, which the fault tests then meet. Split roles
(three controllers, three brokers) are what a production cluster runs; here they would cost
three more JVMs for no behaviour a client can see.

The quorum is static (``controller.quorum.voters``): every node is formatted alike with one
cluster id and must keep its ports, so the ports are chosen free once, recorded in
``cluster.json`` with the cluster id, and reused by every later start. Each node is a
:class:`~lakecast.local.broker.LocalBroker` under ``node-<id>/``; all are launched before any
is waited for, since none answers until a majority of the controllers runs. The internal
topics (offsets, transaction state) and default topic replication come from
``kafka.replication``, capped at the node count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict, cast

import psutil

from lakecast.config import PROJECT_ROOT, TopicReplication
from lakecast.errors import LocalStackError
from lakecast.local import processes
from lakecast.local.broker import LocalBroker, new_cluster_id
from lakecast.local.ports import free_port
from lakecast.local.state import private_dir, write_private
from lakecast.local.stopping import stop_processes

CLUSTER_TEMPLATE = PROJECT_ROOT / "conf" / "kafka" / "cluster.properties"
_STOP_TIMEOUT_S = 30.0


class _NodeLayout(TypedDict):
    id: int
    port: int
    controller_port: int


class _Layout(TypedDict):
    cluster_id: str
    nodes: list[_NodeLayout]


@dataclass(frozen=True)
class NodeStatus:
    """One node as ``lakecast local status`` shows it."""

    node_id: int
    port: int
    controller_port: int
    pid: int | None
    answering: bool

    @property
    def alive(self) -> bool:
        return self.pid is not None and self.answering


def replication_properties(replication: TopicReplication, nodes: int) -> dict[str, str]:
    """Broker properties that replicate the internal topics and default topics as
    ``replication`` asks, on ``nodes`` nodes."""
    replicas, min_isr = replication.on_cluster(nodes)
    return {
        "offsets.topic.replication.factor": str(replicas),
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": str(min_isr),
        "share.coordinator.state.topic.replication.factor": str(replicas),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        "default.replication.factor": str(replicas),
        "min.insync.replicas": str(min_isr),
    }


class LocalKafkaCluster:
    """``nodes`` combined broker+controller nodes whose files all live under ``state_dir``."""

    def __init__(
        self,
        state_dir: Path,
        *,
        nodes: int,
        classpath: str,
        replication: TopicReplication,
        host: str = "127.0.0.1",
        heap: str = "384m",
        start_timeout_s: float = 120.0,
        template: Path = CLUSTER_TEMPLATE,
    ) -> None:
        if nodes < 2:
            msg = f"a Kafka cluster needs at least 2 nodes, got {nodes}: one is `local up`"
            raise LocalStackError(msg)
        self.state_dir = Path(state_dir).resolve()
        self.host = host
        layout = self._layout(nodes)
        voters = ",".join(f"{n['id']}@{host}:{n['controller_port']}" for n in layout["nodes"])
        properties = replication_properties(replication, nodes)
        self.nodes = [
            LocalBroker(
                self.state_dir / f"node-{n['id']}",
                port=n["port"],
                controller_port=n["controller_port"],
                classpath=classpath,
                host=host,
                heap=heap,
                start_timeout_s=start_timeout_s,
                extra_properties=properties,
                template=template,
                node_id=n["id"],
                quorum_voters=voters,
                cluster_id=layout["cluster_id"],
            )
            for n in layout["nodes"]
        ]

    @property
    def layout_file(self) -> Path:
        return self.state_dir / "cluster.json"

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_servers for node in self.nodes)

    def node(self, node_id: int) -> LocalBroker:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        msg = f"the local Kafka cluster has no node {node_id} (nodes {self.node_ids()})"
        raise LocalStackError(msg)

    def node_ids(self) -> list[int]:
        return [node.node_id for node in self.nodes]

    def start(self) -> None:
        """Start every node that is not running and wait until all answer; harmless when
        the cluster runs."""
        for node in self.nodes:
            node.launch()
        for node in self.nodes:
            node.wait_until_answering()

    def stop(self, timeout_s: float = _STOP_TIMEOUT_S) -> list[int]:
        """SIGTERM every node at once (killed after ``timeout_s``); the pids stopped.

        At once, not one by one: the last nodes of a one-by-one stop have lost the quorum
        and wait out their controlled shutdown.
        """
        running = [(node, node.pid) for node in self.nodes]
        tracked = [processes.read_pid_file(node.pid_file) for node, pid in running if pid]
        alive = []
        for process in tracked:
            if process is not None and process.is_alive():
                try:
                    alive.append(psutil.Process(process.pid))
                except psutil.NoSuchProcess:
                    continue
        stop_processes(alive, timeout_s)
        for node, _ in running:
            node.pid_file.unlink(missing_ok=True)
        return [pid for _, pid in running if pid is not None]

    def status(self, timeout_s: float = 3.0) -> list[NodeStatus]:
        """Each node: its ports, pid, and whether it answers as an unfenced broker."""
        return [
            NodeStatus(
                node_id=node.node_id,
                port=node.port,
                controller_port=node.controller_port,
                pid=node.pid,
                answering=node.pid is not None and node.is_answering(timeout_s=timeout_s),
            )
            for node in self.nodes
        ]

    def _layout(self, nodes: int) -> _Layout:
        """The cluster id and each node's ports: as recorded, or chosen free and recorded."""
        if self.layout_file.is_file():
            try:
                layout = json.loads(self.layout_file.read_text())
                recorded = len(layout["nodes"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                msg = f"unreadable cluster layout {self.layout_file}: {exc}"
                raise LocalStackError(msg) from exc
            if recorded != nodes:
                msg = (
                    f"the local Kafka cluster in {self.state_dir} has {recorded} nodes, not "
                    f"{nodes}: ask for {recorded}, or `lakecast local down` and delete "
                    f"{self.state_dir} to start anew"
                )
                raise LocalStackError(msg)
            return cast(_Layout, layout)
        taken: set[int] = set()
        fresh: _Layout = {"cluster_id": new_cluster_id(), "nodes": []}
        for node_id in range(1, nodes + 1):
            port = _distinct_free_port(self.host, taken)
            controller = _distinct_free_port(self.host, taken)
            fresh["nodes"].append({"id": node_id, "port": port, "controller_port": controller})
        private_dir(self.state_dir)
        write_private(self.layout_file, json.dumps(fresh, indent=1))
        return fresh


def _distinct_free_port(host: str, taken: set[int]) -> int:
    """A free port not yet handed out: the OS may offer a port twice before it is bound."""
    while True:
        port = free_port(host)
        if port not in taken:
            taken.add(port)
            return port


def recorded_nodes(state_dir: Path) -> int | None:
    """How many nodes the cluster recorded in ``state_dir`` has (None: no cluster there)."""
    try:
        return len(json.loads((Path(state_dir) / "cluster.json").read_text())["nodes"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
