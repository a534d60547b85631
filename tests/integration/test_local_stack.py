"""`lakecast local up / status / down` driven as a user would, with real processes.

Each test writes its own config (free ports, a temporary state folder) and runs the console
script in a subprocess, so the broker and the Spark daemons must outlive the command that
started them, and later commands must find them by their pid files.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from lakecast.config import settings
from lakecast.errors import LocalStackError
from lakecast.local.broker import LocalBroker
from lakecast.local.jars import resolve_jars
from lakecast.local.ports import free_port

LAKECAST = Path(sys.executable).with_name("lakecast")


@dataclass(frozen=True)
class Stack:
    """A config file for the CLI and what it points at."""

    config: Path
    state_dir: Path
    broker_port: int
    master_port: int
    ui_port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker_port}"

    def cli(self, *args: str, timeout_s: float = 240) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "LAKECAST_CONFIG": str(self.config)}
        env = {k: v for k, v in env.items() if not k.startswith("LAKECAST__")}
        return subprocess.run(
            [str(LAKECAST), "local", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    ports = [free_port() for _ in range(4)]
    state_dir = tmp_path / "state"
    local = {
        "state_dir": str(state_dir),
        "broker_port": ports[0],
        "controller_port": ports[1],
        "spark_master_port": ports[2],
        "spark_master_ui_port": ports[3],
    }
    kafka = {"bootstrap_servers": f"127.0.0.1:{ports[0]}"}
    config = tmp_path / "lakecast.yaml"
    config.write_text(yaml.safe_dump({"local": local, "kafka": kafka}))
    created = Stack(config, state_dir, ports[0], ports[2], ports[3])
    yield created
    created.cli("down", timeout_s=120)  # whatever a failed test left running


def _pid(output: str, component: str) -> int:
    found = re.search(rf"{component}\s.*?pid (\d+)", output)
    assert found, f"no pid for {component} in:\n{output}"
    return int(found.group(1))


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _produce_and_read_back(bootstrap: str, topic: str, value: bytes) -> list[bytes]:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    producer.send(topic, value=value).get(timeout=30)
    producer.close()
    return _read_all(bootstrap, topic)


def _read_all(bootstrap: str, topic: str) -> list[bytes]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    end = consumer.end_offsets(partitions)
    values: list[bytes] = []
    while any(consumer.position(tp) < end[tp] for tp in partitions):
        for batch in consumer.poll(timeout_ms=500).values():
            values.extend(record.value for record in batch)
    consumer.close()
    return values


def test_up_status_up_again_down_with_a_spark_cluster(stack: Stack) -> None:
    first = stack.cli("up", "--spark-workers", "2")
    assert first.returncode == 0, first.stderr
    broker_pid = _pid(first.stdout, "kafka broker")
    assert stack.bootstrap in first.stdout
    assert f"spark://127.0.0.1:{stack.master_port}" in first.stdout
    assert "2 alive" in first.stdout
    secret_file = stack.state_dir / "spark" / "auth.secret"
    assert f"spark.authenticate on, secret in {secret_file}" in first.stdout
    assert secret_file.read_text().strip() not in first.stdout

    # The daemons outlived the `up` process; the broker really serves clients.
    topic = f"local-stack-{uuid.uuid4().hex[:8]}"
    assert _produce_and_read_back(stack.bootstrap, topic, b"hello") == [b"hello"]
    server_log = stack.state_dir / "kafka" / "logs" / "server.log"
    assert "Kafka Server started" in server_log.read_text(), "the broker logs nothing to its file"

    status = stack.cli("status")
    assert status.returncode == 0, status.stderr
    assert _pid(status.stdout, "kafka broker") == broker_pid
    assert "answering" in status.stdout
    assert "not answering" not in status.stdout
    master_pid = _pid(status.stdout, "spark master")
    assert re.search(r"spark workers\s+2 alive", status.stdout), status.stdout

    again = stack.cli("up", "--spark-workers", "2")
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    assert _pid(again.stdout, "kafka broker") == broker_pid
    assert _pid(again.stdout, "spark master") == master_pid

    down = stack.cli("down")
    assert down.returncode == 0, down.stderr
    assert f"pid {broker_pid}" in down.stdout
    assert str(master_pid) in down.stdout
    assert _gone(broker_pid)
    assert _gone(master_pid)

    after = stack.cli("status")
    assert re.search(r"kafka broker\s+stopped", after.stdout), after.stdout
    assert re.search(r"spark master\s+stopped", after.stdout), after.stdout
    assert "nothing was running" in stack.cli("down").stdout


def test_a_taken_broker_port_is_a_clear_error_before_anything_starts(stack: Stack) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", stack.broker_port))
        squatter.listen(1)
        result = stack.cli("up")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert f"port {stack.broker_port} on 127.0.0.1 for the Kafka broker" in result.stderr
    assert f"pid {os.getpid()}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (stack.state_dir / "kafka" / "broker.pid").exists()


def test_broker_restart_keeps_topics_and_records(tmp_path: Path) -> None:
    broker = LocalBroker(
        tmp_path / "kafka",
        port=free_port(),
        controller_port=free_port(),
        classpath=resolve_jars(settings()).kafka_classpath,
    )
    broker.start()
    try:
        topic = f"restart-{uuid.uuid4().hex[:8]}"
        assert _produce_and_read_back(broker.bootstrap_servers, topic, b"before") == [b"before"]
        first_pid = broker.pid
        broker.kill()  # as a crash would: the next start recovers the log
        assert not broker.is_running()
        broker.start()
        assert broker.pid != first_pid
        assert _read_all(broker.bootstrap_servers, topic) == [b"before"]
        broker.stop()
        assert not broker.is_running()
        assert not broker.pid_file.exists()
    finally:
        broker.stop()


def test_a_broker_that_cannot_start_reports_its_log(tmp_path: Path) -> None:
    broker = LocalBroker(
        tmp_path / "kafka",
        port=free_port(),
        controller_port=free_port(),
        classpath=resolve_jars(settings()).kafka_classpath,
        heap="1m",  # below the JVM's minimum: it exits at once, saying why
    )
    with pytest.raises(LocalStackError) as raised:
        broker.start()
    message = str(raised.value)
    assert "exited while starting" in message
    assert "heap" in message.lower()
    assert not broker.is_running()
    assert not broker.pid_file.exists()
