"""Every lakecast service on a secured broker: SASL_SSL (SCRAM-SHA-512), ACLs, a principal each.

One secured broker for this module's tests only (session-scoped, started on first use, on free
ports, stopped at the end), provisioned as ``lakecast local up --secure`` does: topics and ACLs
by the admin, a config overlay per service principal.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from kafka import TopicPartition
from kafka.errors import KafkaError

from lakecast.config import OVERLAY_ENV, KafkaSettings
from lakecast.data.replay import replay
from lakecast.errors import KafkaAccessError
from lakecast.kafka.clients import build_admin, build_consumer, build_producer
from lakecast.local.broker import LocalBroker
from lakecast.local.security import PRINCIPALS, SecureBrokerFiles
from lakecast.monitoring.monitor import MonitorConfig, MonitorService
from lakecast.testing.clock import wait_for
from lakecast.testing.events import synthetic_payloads
from lakecast.testing.features import write_snapshot
from lakecast.testing.models import register_model
from lakecast.testing.samples import Incident, synthetic_fleet, synthetic_sample

LAKECAST = str(Path(sys.executable).parent / "lakecast")
ROOT = Path(__file__).resolve().parents[2]
TOPICS = KafkaSettings().topics
WORKER_GROUP = "lakecast-inference"


class Secured:
    """The started broker, its files and a :class:`KafkaSettings` per principal."""

    def __init__(self, broker: LocalBroker, files: SecureBrokerFiles, overlays: dict[str, Path]):
        self.broker = broker
        self.files = files
        self.overlays = overlays

    def kafka(self, user: str) -> KafkaSettings:
        return KafkaSettings(
            bootstrap_servers=self.broker.bootstrap_servers,
            security=self.files.client_security(user),
        )

    def secrets(self) -> list[str]:
        return [self.files.password(user) for user in PRINCIPALS]

    def failed_authentications(self) -> int:
        log = self.broker.server_log
        return log.read_text(errors="replace").count("Failed authentication") if log.exists() else 0

    def env(self, user: str, **extra: str) -> dict[str, str]:
        return {**os.environ, OVERLAY_ENV: str(self.overlays[user]), **extra}


@pytest.fixture(scope="session")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    from lakecast.config import settings
    from lakecast.local.jars import resolve_jars
    from lakecast.local.ports import free_port

    state = tmp_path_factory.mktemp("secure-kafka")
    files = SecureBrokerFiles(state / "secure")
    broker = LocalBroker(
        state,
        port=free_port(),
        controller_port=free_port(),
        classpath=resolve_jars(settings()).kafka_classpath,
        security=files,
    )
    broker.start()
    try:
        overlays = files.provision(broker.bootstrap_servers, KafkaSettings(), WORKER_GROUP)
        yield Secured(broker, files, overlays)
    finally:
        broker.stop()


def read_all(kafka: KafkaSettings, topic: str) -> list[bytes]:
    """Every committed record of ``topic`` read as ``kafka``'s principal (assigned, no group)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        **kafka.client_options(), isolation_level="read_committed", enable_auto_commit=False
    )
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        values: list[bytes] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            assert time.monotonic() < deadline, f"{topic} not read to its end"
            for batch in consumer.poll(timeout_ms=500).values():
                values.extend(record.value for record in batch)
        return values
    finally:
        consumer.close()


def test_secrets_stay_in_private_files_and_off_command_lines(secured: Secured) -> None:
    broker = secured.broker
    for path in [*secured.files.root.rglob("*"), broker.config_file, broker.storage_stamp]:
        if path.is_file():
            assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
    for folder in (broker.state_dir, broker.logs_dir):
        assert folder.stat().st_mode & 0o077 == 0, f"{folder} is open to others"
    pid = secured.broker.pid
    assert pid is not None
    cmdline = " ".join(psutil.Process(pid).cmdline())
    logs = "".join(p.read_text(errors="replace") for p in secured.broker.logs_dir.iterdir())
    overlays = "".join(p.read_text() for p in secured.overlays.values())
    for secret in secured.secrets():
        assert secret not in cmdline
        assert secret not in logs
        assert secret not in overlays
    assert not (secured.broker.state_dir / "format.args").exists()


def test_replay_produces_events_and_may_write_nothing_else(secured: Secured) -> None:
    kafka = secured.kafka("replay")
    producer = build_producer(kafka, mode="at_least_once", client_id="lakecast-replay")
    try:
        result = replay(producer, TOPICS.events, synthetic_payloads(20, start=10_000))
        assert result.events == 20
        for topic in (TOPICS.predictions, TOPICS.metrics):
            before = secured.failed_authentications()
            started = time.monotonic()
            with pytest.raises(KafkaAccessError) as refused:
                producer.send(topic, key=b"forged", value=b"{}")
            message = str(refused.value)
            assert f"write to {topic!r}" in message
            assert secured.broker.bootstrap_servers in message
            assert "User:replay" in message
            assert "not authorized" in message
            assert time.monotonic() - started < 10, "a refusal should not be retried for long"
            assert secured.failed_authentications() == before
    finally:
        producer.close()
    events = {json.loads(v)["event_id"] for v in read_all(secured.kafka("admin"), TOPICS.events)}
    assert {json.loads(v)["event_id"] for _, v in synthetic_payloads(20, start=10_000)} <= events
    metrics = read_all(secured.kafka("admin"), TOPICS.metrics)
    assert not any(b"forged" in value for value in metrics)


def test_a_wrong_password_is_one_clear_error(secured: Secured, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    security = secured.files.client_security("monitor").model_copy(
        update={"sasl_password_file": str(wrong)}
    )
    kafka = KafkaSettings(bootstrap_servers=secured.broker.bootstrap_servers, security=security)
    before = secured.failed_authentications()
    started = time.monotonic()
    with pytest.raises(KafkaAccessError) as refused:
        build_producer(kafka, mode="at_least_once")
    took = time.monotonic() - started
    message = str(refused.value)
    assert secured.broker.bootstrap_servers in message
    assert "User:monitor" in message
    assert "authentication failed" in message
    assert "not-the-password" not in message
    assert took < 15, f"the refusal took {took:.1f} s"
    assert secured.failed_authentications() - before == 1  # one attempt, not a retry storm

    # The CLI: exit status 1, one error line naming broker and principal, no secret.
    env = secured.env("monitor", LAKECAST__KAFKA__SECURITY__SASL_PASSWORD_FILE=str(wrong))
    result = subprocess.run(
        [LAKECAST, "stream", "monitor", "--metrics-port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    assert "User:monitor" in errors[0]
    assert secured.broker.bootstrap_servers in errors[0]
    assert "not-the-password" not in result.stderr + result.stdout


def test_workers_score_exactly_once_and_monitor_and_autoscaler_write_their_signals(
    secured: Secured, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    registry, snapshot = str(tmp_path / "registry"), str(tmp_path / "entity_features")
    register_model(registry)
    write_snapshot(snapshot)
    group = f"{WORKER_GROUP}-{run}"
    log = (tmp_path / "workers.log").open("wb")
    workers = subprocess.Popen(
        [
            LAKECAST, "stream", "worker", "--processes", "2", "--group", group,
            "--registry", registry, "--entity-features", snapshot,
            "--metrics-port", "0", "--sample-interval", "1",
        ],
        env=secured.env("worker"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    log.close()
    count, first = 300, 1_000_000 + int(run, 16) % 10**6
    admin = build_admin(secured.kafka("admin"))
    try:
        producer = build_producer(secured.kafka("replay"), mode="at_least_once")
        replay(producer, TOPICS.events, synthetic_payloads(count, start=first))
        producer.close()
        ends = build_consumer(secured.kafka("admin"), group_id=f"probe-{run}")
        parts = [TopicPartition(TOPICS.events, p) for p in ends.partitions_for_topic(TOPICS.events)]
        total = sum(ends.end_offsets(parts).values())
        ends.close()

        def committed() -> int:
            if workers.poll() is not None:
                pytest.fail(f"workers exited with {workers.returncode}; see {tmp_path}")
            try:
                offsets = admin.list_group_offsets(group).get(group, {})
            except KafkaError:  # the coordinator is loading, or the group is not there yet
                return 0
            return sum(m.offset for tp, m in offsets.items() if tp.topic == TOPICS.events)

        wait_for(lambda: committed() >= total, timeout_s=240, what=f"{total} committed offsets")
        # No secret on the command line of the supervisor or of its worker children.
        family = [psutil.Process(workers.pid), *psutil.Process(workers.pid).children(True)]
        assert len(family) >= 3
        for process in family:
            cmdline = " ".join(process.cmdline())
            assert all(secret not in cmdline for secret in secured.secrets()), cmdline
    finally:
        workers.send_signal(signal.SIGTERM)
        try:
            workers.wait(timeout=90)
        except subprocess.TimeoutExpired:
            workers.kill()
            workers.wait()
        admin.close()
    assert workers.returncode == 0, (tmp_path / "workers.log").read_text()[-3000:]
    predictions = [json.loads(v) for v in read_all(secured.kafka("admin"), TOPICS.predictions)]
    mine = Counter(p["event_id"] for p in predictions)
    produced = {json.loads(v)["event_id"] for _, v in synthetic_payloads(count, start=first)}
    assert produced <= set(mine), "an event was not scored"
    assert all(mine[e] == 1 for e in produced), "an event was scored twice"
    samples = [json.loads(v) for v in read_all(secured.kafka("admin"), TOPICS.metrics)]
    assert any(s.get("kind") == "sample" for s in samples), "workers wrote no samples"
    written = json.dumps(samples)
    assert all(secret not in written for secret in secured.secrets()), "a secret in metrics"
    worker_log = (tmp_path / "workers.log").read_text(errors="replace")
    assert all(secret not in worker_log for secret in secured.secrets())

    # The monitor reads samples (as itself) and writes anomalies.
    feed = build_producer(secured.kafka("worker"), mode="at_least_once")
    t0 = time.time() - 200
    spike = Incident("latency_p99_ms", start=40, steps=3, factor=10.0, workers=("w-1",))
    for sample in synthetic_fleet(2, 70, t0=t0, incidents=(spike,), seed=7):
        feed.send(TOPICS.metrics, key=b"w", value=json.dumps(sample).encode())
    feed.flush(timeout=30)
    monitor = MonitorService(
        secured.kafka("monitor"),
        TOPICS.metrics,
        MonitorConfig(
            detector="gaussian_tail",
            detector_params={"warmup": 12, "window": 200, "use_diff": 0, "alarm": 0.5},
            threshold=0.5,
            cooldown_s=30.0,
            context=10,
            fleet_window_s=1.0,
            fleet_max_age_s=3.0,
        ),
        group_id=f"lakecast-monitor-{run}",
        from_beginning=True,
        poll_timeout_ms=100,
    )
    stop = threading.Event()
    thread = threading.Thread(target=monitor.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: monitor.stats.written > 0, timeout_s=90, what="an anomaly written")
    finally:
        stop.set()
        thread.join(timeout=30)

    # The autoscaler reads samples and writes a scaling decision (no pool: it only decides).
    from lakecast.autoscaling.policy import load_policy
    from lakecast.autoscaling.service import AutoscalerService

    autoscaler = AutoscalerService(
        secured.kafka("autoscaler"),
        TOPICS.metrics,
        load_policy(None),
        group=group,
        input_topics=(TOPICS.events,),
        partitions=6,
        group_id=f"lakecast-autoscaler-{run}",
        poll_timeout_ms=100,
    )
    stop = threading.Event()
    thread = threading.Thread(target=autoscaler.run, args=(stop,), daemon=True)
    thread.start()
    try:
        for _ in range(20):
            sample = synthetic_sample("w-0", time.time(), lag={"events:0": 0}, partitions=6)
            feed.send(TOPICS.metrics, key=b"w", value=json.dumps(sample).encode())
            feed.flush(timeout=10)
            if autoscaler.decisions:
                break
            time.sleep(1)
        wait_for(lambda: bool(autoscaler.decisions), timeout_s=60, what="a scaling decision")
    finally:
        stop.set()
        thread.join(timeout=30)
        feed.close()
    kinds = Counter(
        json.loads(v).get("kind") for v in read_all(secured.kafka("admin"), TOPICS.metrics)
    )
    assert kinds["anomaly"] >= 1
    assert kinds["scaling"] >= 1
    assert not thread.is_alive()


def committed_offsets(admin: Any, group: str, topic: str) -> int:
    """The sum of ``group``'s committed offsets on ``topic`` (0 while the group is not there)."""
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    except KafkaError:  # the coordinator is loading, or the group is not there yet
        return 0
    return sum(m.offset for tp, m in offsets.items() if tp.topic == topic)


def end_offsets(kafka: KafkaSettings, topic: str) -> int:
    probe = build_consumer(kafka, group_id=f"probe-{uuid.uuid4().hex[:8]}")
    try:
        parts = [TopicPartition(topic, p) for p in probe.partitions_for_topic(topic)]
        return sum(probe.end_offsets(parts).values())
    finally:
        probe.close()


def test_a_worker_the_autoscaler_starts_scores_as_the_worker_principal(
    secured: Secured, tmp_path: Path
) -> None:
    """`lakecast stream autoscaler` run with its own overlay (as `local up --secure` prints it):
    the worker its pool starts reads `events`, which the autoscaler's principal may not."""
    run = uuid.uuid4().hex[:8]
    registry, snapshot = str(tmp_path / "registry"), str(tmp_path / "entity_features")
    register_model(registry)
    write_snapshot(snapshot)
    group = f"{WORKER_GROUP}-pool-{run}"
    policy = json.loads((ROOT / "conf" / "autoscale.json").read_text())
    policy["max_replicas"] = 1  # one worker is the point; scaling is tested elsewhere
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    worker = [
        sys.executable, "-m", "lakecast.cli.main", "stream", "worker", "--group", group,
        "--registry", registry, "--entity-features", snapshot,
        "--metrics-port", "0", "--sample-interval", "1",
    ]  # fmt: skip
    log = (tmp_path / "autoscaler.log").open("wb")
    autoscaler = subprocess.Popen(
        [
            LAKECAST, "stream", "autoscaler", "--policy", str(tmp_path / "policy.json"),
            "--group", group, "--input-topic", TOPICS.events, "--metrics-port", "0",
            "--worker-command", shlex.join(worker), "--worker-log-dir", str(tmp_path / "workers"),
            "--stop-timeout", "60",
        ],
        env=secured.env("autoscaler"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    log.close()
    count, first = 50, 3_000_000 + int(run, 16) % 10**6
    admin = build_admin(secured.kafka("admin"))
    try:
        producer = build_producer(secured.kafka("replay"), mode="at_least_once")
        replay(producer, TOPICS.events, synthetic_payloads(count, start=first))
        producer.close()
        total = end_offsets(secured.kafka("admin"), TOPICS.events)

        def scored_to_end() -> bool:
            if autoscaler.poll() is not None:
                pytest.fail(f"the autoscaler exited with {autoscaler.returncode}; see {tmp_path}")
            return committed_offsets(admin, group, TOPICS.events) >= total

        wait_for(scored_to_end, timeout_s=240, what=f"{total} offsets committed by {group}")
        children = psutil.Process(autoscaler.pid).children()
        assert len(children) == 1, children
        assert children[0].environ()[OVERLAY_ENV] == str(secured.overlays["worker"])
    finally:
        autoscaler.send_signal(signal.SIGTERM)
        try:
            autoscaler.wait(timeout=120)
        except subprocess.TimeoutExpired:
            autoscaler.kill()
            autoscaler.wait()
        admin.close()
    logs = (tmp_path / "autoscaler.log").read_text(errors="replace")
    assert autoscaler.returncode == 0, logs[-3000:]
    worker_logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "workers").iterdir())
    assert all(secret not in logs + worker_logs for secret in secured.secrets())
    predictions = [json.loads(v) for v in read_all(secured.kafka("admin"), TOPICS.predictions)]
    produced = {json.loads(v)["event_id"] for _, v in synthetic_payloads(count, start=first)}
    assert produced <= {p["event_id"] for p in predictions}, "the pool's worker did not score"


ARCHIVE_LOG4J = """\
rootLogger.level = info
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n%ex
"""


def test_the_archive_job_reads_the_secured_topics_through_spark(
    secured: Secured, tmp_path: Path
) -> None:
    """``./spark-submit.sh jobs/archive_topics.py --available-now`` as the archive principal
    (its overlay, as `local up --secure` prints it): the Delta table holds the records, and
    the password, read from its 0600 file in the driver, is in no log line and no command line.
    Spark and the Kafka clients log at INFO here (lakecast's own config says WARN), so the
    clients' whole configuration is in the log."""
    run = uuid.uuid4().hex[:8]
    ids = [f"archive-{run}-{i}" for i in range(30)]
    producer = build_producer(secured.kafka("worker"), mode="at_least_once")
    for i, event_id in enumerate(ids):
        prediction = {
            "event_id": event_id, "user_id": f"u-{i}", "ts": "2026-01-02T03:04:05Z",
            "score": i / 100, "model": {"name": "m", "version": "1.0.0", "sha256": "0" * 64},
            "variant": "champion", "experiment": None, "served": True, "latency_ms": 1.0,
            "features_version": "1",
        }  # fmt: skip
        producer.send(
            TOPICS.predictions, key=f"u-{i}".encode(), value=json.dumps(prediction).encode()
        )
    producer.flush()
    producer.close()
    log4j = tmp_path / "log4j2-info.properties"
    log4j.write_text(ARCHIVE_LOG4J)
    lake = tmp_path / "lake"
    command = [
        str(ROOT / "spark-submit.sh"),
        "--conf", f"spark.driver.extraJavaOptions=-Dlog4j2.configurationFile=file:{log4j}",
        str(ROOT / "jobs" / "archive_topics.py"), "--available-now",
        "--predictions-table", str(lake / "archive" / "predictions"),
        "--metrics-table", str(lake / "archive" / "metrics"),
        "--checkpoints", str(lake / "_checkpoints"),
    ]  # fmt: skip
    job = subprocess.Popen(
        command,
        cwd=ROOT,
        env=secured.env("archive"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(job.stdout or []), daemon=True)
    reader.start()
    command_lines: set[str] = set()
    deadline = time.monotonic() + 420
    while job.poll() is None:
        if time.monotonic() > deadline:
            job.kill()
            pytest.fail("the archive job ran over 420 s:\n" + "".join(output)[-4000:])
        try:
            family = [psutil.Process(job.pid), *psutil.Process(job.pid).children(recursive=True)]
            for process in family:
                command_lines.add(" ".join(process.cmdline()))
        except psutil.Error:  # a process ended between the listing and the read
            pass
        time.sleep(0.2)
    reader.join(timeout=30)
    log = "".join(output)
    assert job.returncode == 0, log[-4000:]

    # Where the password could have gone: the driver JVM's and the Python driver's argv, and
    # every line logged, the Kafka clients' configuration dump included.
    assert any("SparkSubmit" in line for line in command_lines), command_lines
    assert any("archive_topics.py" in line for line in command_lines)
    assert "sasl.jaas.config = [hidden]" in log, "the clients' config was not logged"
    password = secured.files.password("archive")
    assert password not in log
    assert all(password not in line for line in command_lines)
    # Nor in what the run left on disk: the checkpoints and the Delta log.
    for path in lake.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path

    from deltalake import DeltaTable

    archived = DeltaTable(str(lake / "archive" / "predictions")).to_pyarrow_table()
    assert set(ids) <= set(archived.column("event_id").to_pylist())
    summary = json.loads([line for line in log.splitlines() if "archived_rows" in line][-1])
    assert summary["archived_rows"]["predictions"] == archived.num_rows >= len(ids)
