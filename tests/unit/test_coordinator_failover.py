"""The exactly-once producer's sender sees a dead coordinator as not ready, not as an error."""

from __future__ import annotations

from typing import Any

from kafka.errors import KafkaConnectionError

from lakecast.config import KafkaSettings
from lakecast.kafka.clients import build_producer
from lakecast.kafka.coordinator_failover import recover_lost_coordinator


class _DeadCoordinatorClient:
    """A network client whose coordinator's broker is gone, as kafka-python 3.0.12 says it."""

    def __init__(self) -> None:
        self.polled = 0

    def await_ready(self, node_id: Any, timeout_ms: int = 30_000) -> bool:
        msg = f"Node {node_id} not ready after {timeout_ms} ms"
        raise KafkaConnectionError(msg)

    def poll(self) -> int:
        self.polled += 1
        return self.polled


class _Sender:
    def __init__(self, client: Any) -> None:
        self._client = client


class _Producer:
    def __init__(self, client: Any) -> None:
        self._sender = _Sender(client)


def test_await_ready_answers_false_where_the_client_raises() -> None:
    client = _DeadCoordinatorClient()
    producer: Any = _Producer(client)
    recover_lost_coordinator(producer)
    assert producer._sender._client.await_ready("coordinator-3", timeout_ms=10) is False
    assert producer._sender._client.poll() == 1  # everything else is the client's own
    recover_lost_coordinator(producer)  # once only
    assert producer._sender._client._client is client


def test_exactly_once_producers_get_it_and_at_least_once_ones_do_not() -> None:
    # No broker listens here: kafka-python builds the producer without connecting.
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    exactly_once = build_producer(settings, transactional_id="tx-unit", api_version=(4, 1))
    at_least_once = build_producer(settings, mode="at_least_once", api_version=(4, 1))
    try:
        assert type(exactly_once._sender._client).__name__ == "_ReadyOrNot"
        assert type(at_least_once._sender._client).__name__ != "_ReadyOrNot"
    finally:
        exactly_once.close(timeout=0)
        at_least_once.close(timeout=0)
