"""`lakecast stream ...`: the streaming services and the events replayer."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from lakecast.config import settings
from lakecast.errors import ConfigError

if TYPE_CHECKING:
    from lakecast.serving.worker_config import WorkerOptions

app = typer.Typer(
    help="Streaming services: replay, worker, monitor, autoscaler.", no_args_is_help=True
)

# A replay is a command someone waits on: an unreachable broker should be an error within
# seconds, not after kafka-python's 30 s of bootstrap retries. The services keep the 30 s,
# as they may start alongside their broker.
REPLAY_BOOTSTRAP_TIMEOUT_MS = 8_000


def _parse_date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        msg = f"{option} must be YYYY-MM-DD, found {value!r}"
        raise typer.BadParameter(msg) from exc


@app.command()
def replay(
    start: str | None = typer.Option(None, "--start", help="First date (YYYY-MM-DD), inclusive."),
    end: str | None = typer.Option(None, "--end", help="Last date (YYYY-MM-DD), inclusive."),
    rate: float | None = typer.Option(None, "--rate", help="Events per second; default: max."),
    table: str | None = typer.Option(None, "--table", help="Events table (default: the lake's)."),
    topic: str | None = typer.Option(None, "--topic", help="Target topic (default: events)."),
    limit: int | None = typer.Option(None, "--limit", help="Replay at most this many events."),
) -> None:
    """Replay the events table (a date range) into the events topic, keyed by user."""
    from itertools import islice

    from lakecast.data.replay import event_payloads, read_events
    from lakecast.data.replay import replay as produce
    from lakecast.kafka.clients import build_admin, build_producer, ensure_topics, standard_topics

    cfg = settings()
    events = read_events(
        table or cfg.lake.table("events"), _parse_date(start, "--start"), _parse_date(end, "--end")
    )
    total = events.num_rows if limit is None else min(limit, events.num_rows)
    admin = build_admin(cfg.kafka, bootstrap_timeout_ms=REPLAY_BOOTSTRAP_TIMEOUT_MS)
    ensure_topics(admin, standard_topics(cfg.kafka))
    admin.close()
    producer = build_producer(
        cfg.kafka,
        mode="at_least_once",
        client_id="lakecast-replay",
        bootstrap_timeout_ms=REPLAY_BOOTSTRAP_TIMEOUT_MS,
    )
    target = topic or cfg.kafka.topics.events
    columns = (TextColumn("replay"), BarColumn(), TextColumn("{task.completed}/{task.total}"))
    with Progress(*columns, TimeElapsedColumn(), transient=False) as progress:
        task = progress.add_task("replay", total=total)
        result = produce(
            producer,
            target,
            islice(event_payloads(events), total),
            rate=rate,
            on_progress=lambda n: progress.advance(task, n),
        )
    producer.close()
    typer.echo(
        f"replayed {result.events} events to {target} in {result.seconds:.1f} s "
        f"({result.rate:,.0f} events/s)"
    )


def _detector_params(pairs: list[str]) -> dict[str, object]:
    """``NAME=VALUE`` pairs; a value that parses as JSON (a number, true) is taken as such."""
    import json

    params: dict[str, object] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            msg = f"--param must be NAME=VALUE, found {pair!r}"
            raise typer.BadParameter(msg)
        try:
            params[name] = json.loads(raw)
        except ValueError:
            params[name] = raw
    return params


def _run_until_signal(
    service_name: str, metrics_port: int, run: Callable[[threading.Event], object]
) -> None:
    """JSON logs, /metrics, SIGTERM/SIGINT -> stop event, then ``run(stop)``."""
    from lakecast.kafka.shutdown import install_stop_handlers
    from lakecast.monitoring.endpoint import serve_metrics
    from lakecast.monitoring.logging import configure_json_logging

    configure_json_logging(service_name)
    serve_metrics(metrics_port, settings().metrics)
    stop = threading.Event()
    restore = install_stop_handlers(stop)
    try:
        run(stop)
    finally:
        restore()


@app.command()
def monitor(
    detector: str | None = typer.Option(None, "--detector", help="Detector (default: chosen one)."),
    param: list[str] = typer.Option([], "--param", help="Detector parameter NAME=VALUE."),
    threshold: float = typer.Option(0.99, "--threshold", help="Anomaly when score >= this."),
    cooldown: float = typer.Option(60.0, "--cooldown", help="Seconds a series stays quiet after."),
    fleet_window: float = typer.Option(5.0, "--fleet-window", help="Fleet aggregation window, s."),
    alert_on: list[str] = typer.Option(
        [], "--alert-on", help="METRIC=high|low|both: which side of normal is an anomaly."
    ),
    topic: str | None = typer.Option(None, "--topic", help="Metrics topic (default: metrics)."),
    group: str = typer.Option("lakecast-monitor", "--group", help="The monitor's consumer group."),
    from_beginning: bool = typer.Option(False, "--from-beginning", help="Read the topic's start."),
    metrics_port: int = typer.Option(9102, "--metrics-port", help="Prometheus port; 0: off."),
) -> None:
    """Score every worker's samples for anomalies; write kind=anomaly records to metrics."""
    from lakecast.monitoring.detectors import DEFAULT_DETECTOR
    from lakecast.monitoring.monitor import MonitorConfig, MonitorService
    from lakecast.monitoring.staleness import StalenessProbe

    cfg = settings()
    config = MonitorConfig(
        detector=detector or DEFAULT_DETECTOR,
        detector_params=_detector_params(param),
        threshold=threshold,
        cooldown_s=cooldown,
        fleet_window_s=fleet_window,
        fleet_max_age_s=3 * fleet_window,
        alert_on={name: str(side) for name, side in _detector_params(alert_on).items()},
    )
    service = MonitorService(
        cfg.kafka,
        topic or cfg.kafka.topics.metrics,
        config,
        group_id=group,
        from_beginning=from_beginning,
        quality=cfg.quality,
        staleness=cfg.staleness,
        staleness_probe=StalenessProbe(
            cfg.staleness,
            cfg.registry_root,
            cfg.serving.entity_features or cfg.lake.table("entity_features"),
            config.source,
        ),
    )
    _run_until_signal("monitor", metrics_port, service.run)


@app.command()
def autoscaler(
    policy: str | None = typer.Option(None, "--policy", help="Policy file (conf/autoscale.json)."),
    group: str = typer.Option("lakecast-inference", "--group", help="The workers' group."),
    input_topic: list[str] = typer.Option([], "--input-topic", help="Workers' topics (events)."),
    measure_lag: bool = typer.Option(True, "--measure-lag/--sample-lag", help="Lag source."),
    act: bool = typer.Option(True, "--act/--no-act", help="Start/stop local workers."),
    worker_command: str | None = typer.Option(None, "--worker-command", help="Worker argv."),
    worker_arg: list[str] = typer.Option([], "--worker-arg", help="Extra worker argument."),
    worker_log_dir: str | None = typer.Option(None, "--worker-log-dir", help="Workers' logs."),
    stop_timeout: float = typer.Option(30.0, "--stop-timeout", help="SIGTERM -> SIGKILL, s."),
    topic: str | None = typer.Option(None, "--topic", help="Metrics topic (default: metrics)."),
    from_beginning: bool = typer.Option(False, "--from-beginning", help="Read the topic's start."),
    metrics_port: int = typer.Option(9103, "--metrics-port", help="Prometheus port; 0: off."),
) -> None:
    """Scale the inference workers from samples, anomalies and the group's lag."""
    import shlex

    from lakecast.autoscaling.policy import load_policy
    from lakecast.autoscaling.pool import WorkerPool
    from lakecast.autoscaling.service import AutoscalerService
    from lakecast.serving.worker_config import worker_command as default_command

    cfg = settings()
    loaded = load_policy(policy)
    pool = None
    if act:
        command = shlex.split(worker_command) if worker_command else default_command()
        pool = WorkerPool(
            [*command, *worker_arg],
            stop_timeout_s=stop_timeout,
            log_dir=worker_log_dir,
            config_overlay=cfg.autoscaling.worker_config_overlay,
        )
    service = AutoscalerService(
        cfg.kafka,
        topic or cfg.kafka.topics.metrics,
        loaded,
        group=group,
        input_topics=(input_topic or [cfg.kafka.topics.events]) if measure_lag else (),
        pool=pool,
        partitions=cfg.kafka.partitions,
        from_beginning=from_beginning,
    )
    _run_until_signal("autoscaler", metrics_port, service.run)


@app.command()
def worker(
    model: str | None = typer.Option(None, "--model", help="NAME@ALIAS (default: serving.model)."),
    group: str | None = typer.Option(None, "--group", help="Consumer group (serving.group_id)."),
    processes: int = typer.Option(1, "--processes", min=1, help="Worker processes to start."),
    metrics_port: int | None = typer.Option(None, "--metrics-port", help="Prometheus; 0: off."),
    delivery: str | None = typer.Option(None, "--delivery", help="exactly_once or at_least_once."),
    max_batch: int | None = typer.Option(None, "--max-batch", help="Records per micro-batch."),
    max_wait_ms: int | None = typer.Option(None, "--max-wait-ms", help="Wait for a 1st record."),
    sample_interval: float | None = typer.Option(None, "--sample-interval", help="Seconds."),
    registry: str | None = typer.Option(None, "--registry", help="Registry root."),
    entity_features: str | None = typer.Option(None, "--entity-features", help="Snapshot table."),
    topic: str | None = typer.Option(None, "--topic", help="Events topic (default: events)."),
    predictions_topic: str | None = typer.Option(None, "--predictions-topic", help="Output."),
    dlq_topic: str | None = typer.Option(None, "--dlq-topic", help="Dead-letter topic."),
    metrics_topic: str | None = typer.Option(None, "--metrics-topic", help="Samples topic."),
    transactional_id: str | None = typer.Option(None, "--transactional-id", help="Stable id."),
    source_id: str | None = typer.Option(None, "--source-id", help="Name in metric samples."),
) -> None:
    """Serve online predictions: events -> features -> model -> predictions (exactly once).

    With ``--processes N`` this process supervises N workers in one group; it exits 0 once all
    of them stopped with status 0 after SIGTERM / SIGINT, 1 otherwise.
    """
    from lakecast.kafka.shutdown import install_stop_handlers
    from lakecast.monitoring.logging import configure_json_logging
    from lakecast.serving.worker_config import WorkerConfig, WorkerOptions

    cfg = settings()
    try:
        options = WorkerOptions.parse(
            model=model, group_id=group, delivery=delivery, max_batch=max_batch,
            max_wait_ms=max_wait_ms, sample_interval_s=sample_interval, registry=registry,
            entity_features=entity_features, events_topic=topic,
            predictions_topic=predictions_topic, dlq_topic=dlq_topic,
            metrics_topic=metrics_topic, transactional_id=transactional_id, source_id=source_id,
        )  # fmt: skip
        # Refused here, before any child starts, as the child would refuse it.
        config = WorkerConfig.from_settings(cfg, options)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc
    port = cfg.serving.metrics_port if metrics_port is None else metrics_port
    configure_json_logging("worker")
    stop = threading.Event()
    restore = install_stop_handlers(stop)
    try:
        if processes > 1:
            from lakecast.serving.processes import run_processes

            # The children share the group: resolved here, so each slot's ids derive from it.
            group_id = config.serving.group_id
            report = run_processes(
                processes, options, metrics_port=port, group_id=group_id, stop=stop
            )
            if not report.clean:
                # A supervisor (systemd, Kubernetes) should see that a worker did not stop well.
                raise typer.Exit(code=1)
            return
        _serve_one(port, stop, options)
    finally:
        restore()


def _serve_one(port: int, stop: threading.Event, options: WorkerOptions) -> None:
    """One worker in this process: topics ensured, /metrics served, run until stopped."""
    from lakecast.kafka.clients import TopicSpec, build_admin, ensure_topics
    from lakecast.monitoring.endpoint import serve_metrics
    from lakecast.serving.worker import build_worker

    cfg = settings()
    built = build_worker(cfg, options)
    topics = built.config.topics
    # An unknown model, version or alias is named before the broker is dialled (30 s away
    # when it is down); the worker resolves it again when it starts serving.
    built.models.registry.resolve(built.models.reference)
    admin = build_admin(cfg.kafka)
    try:
        ensure_topics(
            admin,
            [
                TopicSpec(topics.events, cfg.kafka.partitions),
                TopicSpec(topics.predictions, cfg.kafka.partitions),
                TopicSpec(topics.dlq, 1),
                TopicSpec(topics.metrics, 1),
            ],
        )
    finally:
        admin.close()
    serve_metrics(port, cfg.metrics)
    built.run(cfg.kafka, stop)
