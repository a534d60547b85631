"""The local broker's rendered server.properties and cluster ids, without starting a JVM."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from lakecast.errors import EnvironmentSetupError, LocalStackError
from lakecast.local.broker import LocalBroker, new_cluster_id


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#")
    return {key.strip(): value.strip() for key, value in pairs}


def test_rendered_config_is_a_one_node_kraft_broker_on_the_given_ports(tmp_path: Path) -> None:
    broker = LocalBroker(
        tmp_path / "kafka",
        port=19092,
        controller_port=19093,
        classpath="",
        host="127.0.0.2",
        extra_properties={"transaction.max.timeout.ms": "60000"},
    )
    broker._write_config()
    rendered = broker.config_file.read_text()
    assert "$" not in rendered
    props = _properties(rendered)
    assert props["listeners"] == "PLAINTEXT://127.0.0.2:19092,CONTROLLER://127.0.0.2:19093"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.2:19093"
    assert props["process.roles"] == "broker,controller"
    assert props["log.dirs"] == str(broker.data_dir)
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
    ):
        assert props[key] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "true"
    assert props["transaction.max.timeout.ms"] == "60000"
    assert broker.bootstrap_servers == "127.0.0.2:19092"


def test_cluster_ids_are_kafka_shaped_and_distinct() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_broker_and_controller_ports_must_differ(tmp_path: Path) -> None:
    with pytest.raises(LocalStackError, match="two ports, both are 9092"):
        LocalBroker(tmp_path, port=9092, controller_port=9092, classpath="")


def test_a_classpath_without_kafka_says_to_resolve_the_jars(tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path, port=1, controller_port=2, classpath="/nowhere/other.jar")
    with pytest.raises(EnvironmentSetupError, match="lakecast jars"):
        broker._java()
