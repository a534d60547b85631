"""kafka-python clients built from the one config, with the options each role needs.

Bootstrap servers and security come from :meth:`KafkaSettings.client_options`; the role adds
what exactly-once (or at-least-once) delivery requires, so that no service can build a
consumer that auto-commits or reads uncommitted output by accident.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError
from kafka.record import util as record_util

from lakecast.config import KafkaSettings
from lakecast.errors import StreamError
from lakecast.kafka.partitioner import CachedKeyPartitioner

log = logging.getLogger(__name__)

DeliveryMode = Literal["exactly_once", "at_least_once"]
DELIVERY_MODES: tuple[DeliveryMode, ...] = ("exactly_once", "at_least_once")

_TOPIC_ALREADY_EXISTS = 36
TXN_RETRY_BACKOFF_MS = 5
# A producer batch (per partition) may grow to this before a second one is started; it fits
# Kafka's default max.message.bytes and max.request.size (1 MiB). Why so large: kafka-python
# wakes its sender thread (a socket write) on every send while a partition has two batches
# queued, and a 2,000-record transaction filled a 64 KiB batch per partition before the
# sender could take it: 155,000 wake-ups for 200,000 records, and 1,000,000 bytes took the
# worker from 17k to 22k events/s (the raw pipe from 28k to 34k). The buffer grows with the
# records, so a large limit costs nothing when batches are small.
BATCH_BYTES = 1_000_000


def crc32c_is_native() -> bool:
    """Whether kafka-python checks and writes record batch CRCs in C (the ``crc32c`` package,
    its ``crc32c`` extra).

    The pure-Python fallback costs about 170 ns a byte: 5 ms for a 30 KB batch, on every
    fetched and every produced batch, holding the GIL. On the streaming benchmark it was the
    largest CPU cost of the worker and doubled the commit time.
    """
    return getattr(record_util, "crc32c_c", None) is not None


@functools.cache
def _warn_if_crc32c_is_slow() -> None:
    if not crc32c_is_native():
        log.warning(
            "kafka-python computes record CRCs in pure Python (about 170 ns a byte); "
            "install its crc32c extra: pip install 'kafka-python[crc32c]'"
        )


def check_mode(mode: str) -> DeliveryMode:
    if mode not in DELIVERY_MODES:
        msg = f"delivery mode must be one of {DELIVERY_MODES}, found {mode!r}"
        raise ValueError(msg)
    return mode


def transactional_id_for(group_id: str) -> str:
    """A transactional id unique to this process.

    KIP-447 fences zombies through the consumer group's generation, so ids need not be
    stable across restarts; a unique one per process means two live workers never fence
    each other.
    """
    return f"{group_id}-{uuid.uuid4().hex[:12]}"


def consumer_options(
    settings: KafkaSettings, *, group_id: str, client_id: str | None = None
) -> dict[str, Any]:
    """Options of a consumer on the streaming path: manual commits, committed reads only."""
    return {
        **settings.client_options(),
        **settings.group_options(),
        "group_id": group_id,
        "client_id": client_id or f"lakecast-{group_id}",
        "enable_auto_commit": False,
        "isolation_level": "read_committed",
        "auto_offset_reset": "earliest",
        "request_timeout_ms": settings.request_timeout_ms,
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
        "max_poll_records": 500,
    }


def producer_options(
    settings: KafkaSettings,
    *,
    mode: DeliveryMode = "exactly_once",
    transactional_id: str | None = None,
    client_id: str | None = None,
) -> dict[str, Any]:
    """Options of a producer: idempotent always; transactional in exactly-once mode."""
    check_mode(mode)
    options: dict[str, Any] = {
        **settings.client_options(),
        "client_id": client_id or "lakecast-producer",
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "batch_size": BATCH_BYTES,
        "request_timeout_ms": settings.request_timeout_ms,
        "partitioner": CachedKeyPartitioner(),
    }
    if mode == "exactly_once":
        if not transactional_id:
            msg = "exactly_once delivery needs a transactional_id (see transactional_id_for)"
            raise ValueError(msg)
        options["transactional_id"] = transactional_id
        # The first send of a transaction meets CONCURRENT_TRANSACTIONS while the broker still
        # writes the previous one's markers, and is retried after this backoff (kafka-python
        # caps that one at 20 ms, as Java does). A raw transactional loop of 50 records per
        # transaction, local broker, send+flush p50/p90: 20 ms -> 9.9/31.3 ms, 5 ms ->
        # 7.5/16.0, 2 ms -> 6.2/10.8. 5 ms keeps retries of other errors from hammering.
        options["retry_backoff_ms"] = TXN_RETRY_BACKOFF_MS
    return options


def build_consumer(
    settings: KafkaSettings, *, group_id: str, client_id: str | None = None, **overrides: Any
) -> KafkaConsumer:
    """A consumer that is not yet subscribed (the loop subscribes with its rebalance listener)."""
    _warn_if_crc32c_is_slow()
    options = {**consumer_options(settings, group_id=group_id, client_id=client_id), **overrides}
    try:
        return KafkaConsumer(**options)
    except KafkaError as exc:
        msg = f"build consumer for group {group_id!r} at {settings.bootstrap_servers}: {exc!r}"
        raise StreamError(msg) from exc


def await_topics(consumer: KafkaConsumer, topics: Iterable[str], timeout_s: float = 30.0) -> bool:
    """Wait until the consumer's metadata knows every topic in ``topics``; False on timeout.

    A member that joins its group before its client has a new topic's metadata is assigned
    nothing and stays idle until the next metadata refresh (minutes), so subscribe after this.
    """
    names = list(topics)
    deadline = time.monotonic() + timeout_s
    while not all(consumer.partitions_for_topic(name) for name in names):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def build_producer(
    settings: KafkaSettings,
    *,
    mode: DeliveryMode = "exactly_once",
    transactional_id: str | None = None,
    client_id: str | None = None,
    **overrides: Any,
) -> KafkaProducer:
    """A producer for ``mode``; a transactional one still needs ``init_transactions()``."""
    _warn_if_crc32c_is_slow()
    options = producer_options(
        settings, mode=mode, transactional_id=transactional_id, client_id=client_id
    )
    try:
        return KafkaProducer(**{**options, **overrides})
    except KafkaError as exc:
        msg = f"build {mode} producer at {settings.bootstrap_servers}: {exc!r}"
        raise StreamError(msg) from exc


def build_admin(settings: KafkaSettings, **overrides: Any) -> KafkaAdminClient:
    options = {**settings.client_options(), "client_id": "lakecast-admin", **overrides}
    try:
        return KafkaAdminClient(**options)
    except KafkaError as exc:
        msg = f"build admin client at {settings.bootstrap_servers}: {exc!r}"
        raise StreamError(msg) from exc


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int = 1
    replication_factor: int = 1
    configs: dict[str, str] = field(default_factory=dict)


def ensure_topics(
    admin: KafkaAdminClient, topics: Iterable[TopicSpec], *, timeout_ms: int = 30_000
) -> list[str]:
    """Create the topics that do not exist yet and wait until they have leaders.

    Returns:
        The names of the topics this call created (existing ones are left as they are).

    Raises:
        StreamError: the broker refused a topic for another reason than that it exists.
    """
    specs = list(topics)
    if not specs:
        return []
    request = {
        spec.name: {
            "num_partitions": spec.partitions,
            "replication_factor": spec.replication_factor,
            "configs": dict(spec.configs),
        }
        for spec in specs
    }
    try:
        response = admin.create_topics(request, timeout_ms=timeout_ms, raise_errors=False)
    except KafkaError as exc:
        msg = f"create topics {sorted(request)}: {exc!r}"
        raise StreamError(msg) from exc
    created, problems = [], []
    for topic in response["topics"]:
        code = topic.get("error_code", 0)
        if code == 0:
            created.append(topic["name"])
        elif code != _TOPIC_ALREADY_EXISTS:
            problems.append(f"{topic['name']}: error {code} {topic.get('error_message')}")
    if problems:
        msg = "create topics: " + "; ".join(problems)
        raise StreamError(msg)
    try:
        admin.wait_for_topics(sorted(request), timeout_ms=timeout_ms)
    except KafkaError as exc:
        msg = f"create topics {sorted(request)}: not ready after {timeout_ms} ms ({exc!r})"
        raise StreamError(msg) from exc
    return created


def standard_topics(settings: KafkaSettings) -> list[TopicSpec]:
    """The four topics of the streaming path, with the configured partition count."""
    names = settings.topics
    return [
        TopicSpec(names.events, settings.partitions),
        TopicSpec(names.predictions, settings.partitions),
        TopicSpec(names.dlq, 1),
        TopicSpec(names.metrics, 1),
    ]
