"""Shared fixtures: one real SparkSession and one real Kafka broker per test session.

Expensive real things are session-scoped; cheap isolation (topic names, table paths,
consumer groups) is function-scoped and uuid-named, as Quix Streams does.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from lakecast.local.broker import LocalBroker

TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier, taken from the folder it lives in."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """A local[2] SparkSession with Delta on, the UI off, bound to 127.0.0.1."""
    from lakecast.spark import get_spark

    session = get_spark(
        "lakecast-tests",
        master="local[2]",
        conf={
            "spark.ui.enabled": "false",
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.databricks.delta.snapshotPartitions": "2",
            "spark.ui.showConsoleProgress": "false",
        },
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def table_path(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], str]:
    """A factory of fresh, uuid-named table paths: ``table_path("events")``."""

    def make(name: str = "table") -> str:
        return str(tmp_path_factory.mktemp("lake") / f"{name}_{uuid.uuid4().hex[:8]}")

    return make


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A real single-node KRaft Apache Kafka broker on free ports, for the whole session."""
    from lakecast.testing.brokers import temporary_broker

    broker = temporary_broker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def bootstrap(kafka_broker: LocalBroker) -> str:
    return kafka_broker.bootstrap_servers


@pytest.fixture
def topic_factory(bootstrap: str) -> Iterator[Callable[..., str]]:
    """Create uuid-named topics on the session broker: ``topic_factory("events", partitions=3)``."""
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="lakecast-tests")
    created: list[str] = []

    def make(prefix: str = "topic", partitions: int = 1, **configs: Any) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        topic_configs = {key.replace("_", "."): str(value) for key, value in configs.items()}
        admin.create_topics(
            [NewTopic(name, partitions, 1, topic_configs=topic_configs)], timeout_ms=30_000
        )
        created.append(name)
        return name

    yield make
    admin.close()


@pytest.fixture
def consumer_group() -> str:
    return f"group-{uuid.uuid4().hex[:8]}"
