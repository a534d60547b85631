"""`lakecast local ...`: the embedded stack (a Kafka broker, optionally a Spark cluster).

Everything ``up`` starts is detached and tracked by pid files under the state folder
(``local.state_dir``, ``.state/`` by default), so ``status`` and ``down`` work from any later
shell. ``up`` is idempotent: what already runs is left running. ``up --secure`` starts the
broker with SASL_SSL (SCRAM-SHA-512), ACLs and a principal per service, and writes a config
overlay per principal (:mod:`lakecast.local.security`). ``up --brokers 3`` starts a three-node
KRaft cluster instead (:mod:`lakecast.local.cluster`, under ``kafka-cluster/``) on ports chosen
free once and kept; its bootstrap servers are printed to set as ``kafka.bootstrap_servers``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from lakecast.config import OVERLAY_ENV, Settings, settings
from lakecast.local import processes
from lakecast.local.broker import LocalBroker, formatted_secure
from lakecast.local.cluster import LocalKafkaCluster, recorded_nodes
from lakecast.local.security import ADMIN_USER, SERVICE_USERS, SecureBrokerFiles
from lakecast.local.spark_cluster import SparkStandaloneCluster
from lakecast.local.state import private_dir

app = typer.Typer(
    help="Start, inspect and stop the local Kafka broker and Spark standalone cluster.",
    no_args_is_help=True,
)


def _state_dir(config: Settings) -> Path:
    """The state folder, created 0700 (or tightened to it): it holds pid files and secrets."""
    return private_dir(config.project_path(config.local.state_dir))


def _broker(config: Settings, classpath: str = "", *, secure: bool | None = None) -> LocalBroker:
    """The local broker; ``secure`` None: as its storage was formatted (for status, down)."""
    local = config.local
    state = _state_dir(config) / "kafka"
    if secure is None:
        secure = formatted_secure(state)
    return LocalBroker(
        state,
        port=local.broker_port,
        controller_port=local.controller_port,
        classpath=classpath,
        host=local.host,
        heap=local.broker_heap,
        start_timeout_s=local.broker_start_timeout_s,
        security=SecureBrokerFiles(state / "secure", host=local.host) if secure else None,
    )


def _cluster(
    config: Settings, classpath: str = "", nodes: int | None = None
) -> LocalKafkaCluster | None:
    """The local multi-node cluster; ``nodes`` None: as recorded (None when there is none)."""
    state = _state_dir(config) / "kafka-cluster"
    nodes = nodes or recorded_nodes(state)
    if nodes is None:
        return None
    local = config.local
    return LocalKafkaCluster(
        state,
        nodes=nodes,
        classpath=classpath,
        replication=config.kafka.replication,
        host=local.host,
        start_timeout_s=local.broker_start_timeout_s,
    )


def _cluster_up(config: Settings, nodes: int) -> None:
    from lakecast.local.jars import resolve_jars

    cluster = _cluster(config, resolve_jars(config).kafka_classpath, nodes)
    if cluster is None:  # nodes is given
        raise typer.Exit(code=1)
    cluster.start()
    replicas, min_isr = config.kafka.replication.on_cluster(nodes)
    typer.echo(
        f"kafka cluster  {nodes} nodes (broker+controller), topics: {replicas} replicas, "
        f"min.insync.replicas {min_isr}"
    )
    _echo_nodes(cluster)
    typer.echo(f"               LAKECAST__KAFKA__BOOTSTRAP_SERVERS={cluster.bootstrap_servers}")


def _echo_nodes(cluster: LocalKafkaCluster) -> None:
    for node in cluster.status():
        state = "alive" if node.alive else ("not answering" if node.pid else "stopped")
        pid = f"pid {node.pid}" if node.pid else "no pid"
        typer.echo(
            f"  node {node.node_id}       {cluster.host}:{node.port}  controller "
            f"{cluster.host}:{node.controller_port}  {pid}  {state}"
        )


def _spark(config: Settings) -> SparkStandaloneCluster:
    local = config.local
    return SparkStandaloneCluster(
        _state_dir(config) / "spark",
        host=local.host,
        master_port=local.spark_master_port,
        ui_port=local.spark_master_ui_port,
    )


@app.command()
def up(
    spark_workers: int = typer.Option(
        0, "--spark-workers", min=0, help="Also start a Spark master and this many workers."
    ),
    secure: bool = typer.Option(
        False, "--secure", help="SASL_SSL (SCRAM-SHA-512), ACLs, one principal per service."
    ),
    brokers: int = typer.Option(
        1, "--brokers", min=1, help="Kafka nodes: 1, or a KRaft cluster of this many (e.g. 3)."
    ),
) -> None:
    """Start the local Kafka broker (and a Spark cluster); what already runs is kept."""
    from lakecast.local.jars import resolve_jars

    config = settings()
    if brokers > 1:
        if secure:
            typer.secho("--secure is for the single broker, not --brokers N", fg="red", err=True)
            raise typer.Exit(code=2)
        _cluster_up(config, brokers)
        _spark_up(config, spark_workers)
        return
    broker = _broker(config, resolve_jars(config).kafka_classpath, secure=secure)
    was_running = broker.is_running()
    broker.start()
    if was_running:
        typer.echo(f"kafka broker   already running  pid {broker.pid}  {broker.bootstrap_servers}")
    else:
        took = f"started in {broker.last_start_s:.1f} s" if broker.last_start_s else "started"
        typer.echo(f"kafka broker   {took}  pid {broker.pid}  {broker.bootstrap_servers}")
    typer.echo(f"               logs {broker.logs_dir}")
    if secure:
        if broker.security is None:  # _broker(secure=True) always sets it
            raise typer.Exit(code=1)
        overlays = broker.security.provision(
            broker.bootstrap_servers, config.kafka, config.serving.group_id
        )
        typer.echo("               SASL_SSL, SCRAM-SHA-512, ACLs; a config overlay per principal:")
        for user, path in overlays.items():
            typer.echo(f"               {user:<10} {OVERLAY_ENV}={path}")
        typer.echo(f"               e.g. {OVERLAY_ENV}={overlays['worker']} lakecast stream worker")
    elif broker.bootstrap_servers not in config.kafka.bootstrap_servers.split(","):
        typer.secho(
            f"note: kafka.bootstrap_servers is {config.kafka.bootstrap_servers}, "
            f"not this broker ({broker.bootstrap_servers})",
            fg=typer.colors.YELLOW,
        )
    _spark_up(config, spark_workers)


def _spark_up(config: Settings, spark_workers: int) -> None:
    if spark_workers:
        cluster = _spark(config)
        cluster.start(workers=spark_workers)
        state = cluster.status()
        typer.echo(
            f"spark master   running  pid {state.master_pid}  {cluster.master_url}  "
            f"UI {cluster.ui_url}"
        )
        typer.echo(
            f"spark workers  {state.alive_workers} alive  "
            f"pids {', '.join(str(pid) for pid in state.worker_pids)}"
        )
        typer.echo(
            f"               spark.authenticate on, secret in {cluster.secret_file} "
            "(spark-submit.sh passes it to drivers)"
        )


@app.command()
def status() -> None:
    """Say what runs: pids, addresses and where the logs are."""
    config = settings()
    broker = _broker(config)
    pid = broker.pid
    if pid is None:
        typer.echo(f"kafka broker   stopped  ({broker.bootstrap_servers})")
    else:
        answering = "answering" if broker.is_answering(timeout_s=3.0) else "not answering"
        typer.echo(f"kafka broker   running  pid {pid}  {broker.bootstrap_servers}  {answering}")
        typer.echo(f"               logs {broker.logs_dir}")
    if broker.security is not None:
        principals = ", ".join((ADMIN_USER, *SERVICE_USERS))
        typer.echo(f"               SASL_SSL, SCRAM-SHA-512, ACLs; principals {principals}")
        typer.echo(f"               overlays {broker.security.root}/NAME.yaml ({OVERLAY_ENV})")
    kafka_cluster = _cluster(config)
    if kafka_cluster is not None:
        running = sum(node.pid is not None for node in kafka_cluster.nodes)
        typer.echo(f"kafka cluster  {len(kafka_cluster.nodes)} nodes, {running} running")
        _echo_nodes(kafka_cluster)
    cluster = _spark(config)
    state = cluster.status()
    if state.running:
        typer.echo(
            f"spark master   running  pid {state.master_pid}  {cluster.master_url}  "
            f"UI {cluster.ui_url}"
        )
        pids = ", ".join(str(worker) for worker in state.worker_pids) or "none"
        typer.echo(f"spark workers  {state.alive_workers} alive  pids {pids}")
    else:
        typer.echo(f"spark master   stopped  ({cluster.master_url})")


@app.command()
def down() -> None:
    """Stop everything `up` started (Spark workers, master, then the broker), by pid.

    A pid file that names a process lakecast did not start (its command line, owner or start
    time differ) is dropped and that process left running, with a note saying so.
    """
    config = settings()
    for pid_file in sorted(_state_dir(config).rglob("*.pid")):
        check = processes.check_pid_file(pid_file)
        if check.verdict == "foreign":
            typer.secho(f"left alone: {check.describe()}", fg=typer.colors.YELLOW)
    stopped_spark = _spark(config).stop()
    if stopped_spark:
        typer.echo(f"spark cluster  stopped  pids {', '.join(str(pid) for pid in stopped_spark)}")
    kafka_cluster = _cluster(config)
    stopped_nodes = kafka_cluster.stop() if kafka_cluster is not None else []
    if stopped_nodes:
        typer.echo(f"kafka cluster  stopped  pids {', '.join(str(pid) for pid in stopped_nodes)}")
    broker = _broker(config)
    pid = broker.pid
    broker.stop()
    if pid is not None:
        typer.echo(f"kafka broker   stopped  pid {pid}")
    if not stopped_spark and pid is None and not stopped_nodes:
        typer.echo("nothing was running")
