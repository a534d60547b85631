"""kafka-python clients built from the one config, with the options each role needs.

Bootstrap servers and security come from :meth:`KafkaSettings.client_options`; the role adds
what exactly-once (or at-least-once) delivery requires, so that no service can build a
consumer that auto-commits or reads uncommitted output by accident.

On a secured cluster a refused principal is one clear :class:`KafkaAccessError` naming the
broker and the principal: a wrong password is found by one authentication attempt before the
client is built (kafka-python itself would retry it until its bootstrap timeout and then say
only that it could not bootstrap), and a send or poll the ACLs refuse says who was refused what.
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
from kafka.errors import AuthorizationError, KafkaError, SaslAuthenticationFailedError
from kafka.record import util as record_util

from lakecast.config import KafkaSettings, TopicReplication
from lakecast.errors import KafkaAccessError, StreamError
from lakecast.kafka.coordinator_failover import recover_lost_coordinator
from lakecast.kafka.partitioner import CachedKeyPartitioner

log = logging.getLogger(__name__)

DeliveryMode = Literal["exactly_once", "at_least_once"]
DELIVERY_MODES: tuple[DeliveryMode, ...] = ("exactly_once", "at_least_once")

_TOPIC_ALREADY_EXISTS = 36
_TOPIC_AUTHORIZATION_FAILED = 29
# One authentication attempt before a SASL client is built: long enough for a TLS handshake
# and SCRAM's round trips on a loaded machine.
AUTH_PROBE_TIMEOUT_MS = 10_000
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
    settings: KafkaSettings, *, group_id: str | None, client_id: str | None = None
) -> dict[str, Any]:
    """Options of a consumer on the streaming path: manual commits, committed reads only.

    ``group_id`` None: a reader of assigned partitions that belongs to no group.
    """
    return {
        **settings.client_options(),
        **settings.group_options(),
        "group_id": group_id,
        "client_id": client_id or f"lakecast-{group_id or 'reader'}",
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


def principal(settings: KafkaSettings) -> str:
    """Who the broker takes these settings' clients for, for messages (never the secret)."""
    security = settings.security
    if security.sasl_username:
        return f"User:{security.sasl_username} ({security.sasl_mechanism})"
    if security.ssl_certfile:
        return f"the certificate {security.ssl_certfile}"
    return "User:ANONYMOUS"


def access_error(settings: KafkaSettings, what: str, exc: BaseException) -> KafkaAccessError:
    """A :class:`KafkaAccessError` saying that the broker refused ``what`` to our principal."""
    if isinstance(exc, SaslAuthenticationFailedError):
        reason = "authentication failed (wrong user name or password?)"
    else:
        reason = f"not authorized ({type(exc).__name__}: {exc}): the ACLs do not allow it"
    msg = f"{what} at {settings.bootstrap_servers} as {principal(settings)}: {reason}"
    return KafkaAccessError(msg)


@functools.cache
def _authentication_failure(options: tuple[tuple[str, Any], ...]) -> Exception | None:
    """Authenticate once to the first bootstrap server; the broker's refusal, if it refused.

    Kafka answers a wrong SCRAM proof by closing the connection (over TLS kafka-python then
    sees only "socket disconnected"): a connection whose ApiVersions request was answered,
    so the broker is up and TLS is fine, and that is then lost in the SASL exchange is
    taken for a refusal. A broker that cannot be reached is not one: the client's own
    bootstrap deals with it. Cached per process and options: one handshake per service.
    """
    from kafka.net.compat import KafkaNetClient

    client = KafkaNetClient(**dict(options))
    try:
        node = client.cluster.bootstrap_brokers()[0]
        conn = client._manager.get_connection(
            node.node_id, pop_on_close=False, refresh_metadata_on_err=False
        )
        client._net.poll(timeout_ms=AUTH_PROBE_TIMEOUT_MS, future=conn.init_future)
        failure = conn.init_future.exception if conn.init_future.is_done else None
        if failure is None or isinstance(failure, SaslAuthenticationFailedError):
            return failure
        if getattr(conn, "broker_version_data", None) is not None:
            return SaslAuthenticationFailedError(
                f"the broker closed the connection during SASL authentication ({failure})"
            )
        return None
    except KafkaError:
        return None
    finally:
        client.close()


def check_credentials(settings: KafkaSettings) -> None:
    """Raise :class:`KafkaAccessError` at once if the broker refuses our SASL credentials."""
    if not settings.security.sasl_mechanism:
        return
    options = settings.client_options()
    hashable = tuple(
        (key, tuple(value) if isinstance(value, list) else value)
        for key, value in sorted(options.items())
    )
    failure = _authentication_failure(hashable)
    if failure is not None:
        raise access_error(settings, "connect", failure)


class _Consumer(KafkaConsumer):
    """A KafkaConsumer whose refusals by the ACLs name the broker and the principal."""

    lakecast_settings: KafkaSettings

    def poll(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().poll(*args, **kwargs)
        except AuthorizationError as exc:
            group = self.config.get("group_id")
            raise access_error(self.lakecast_settings, f"read (group {group!r})", exc) from exc


class _Producer(KafkaProducer):
    """A KafkaProducer whose refusals by the ACLs name the broker, principal and topic."""

    lakecast_settings: KafkaSettings

    def send(self, topic: str, *args: Any, **kwargs: Any) -> Any:
        try:
            future = super().send(topic, *args, **kwargs)
        except AuthorizationError as exc:
            raise access_error(self.lakecast_settings, f"write to {topic!r}", exc) from exc
        # kafka-python returns a refused topic's metadata as an already failed future, which
        # a caller that only flushes (the replay) would never look at.
        if future.is_done and isinstance(future.exception, AuthorizationError):
            raise access_error(self.lakecast_settings, f"write to {topic!r}", future.exception)
        return future


def build_consumer(
    settings: KafkaSettings,
    *,
    group_id: str | None,
    client_id: str | None = None,
    **overrides: Any,
) -> KafkaConsumer:
    """A consumer that is not yet subscribed (the loop subscribes with its rebalance listener)."""
    _warn_if_crc32c_is_slow()
    check_credentials(settings)
    options = {**consumer_options(settings, group_id=group_id, client_id=client_id), **overrides}
    try:
        consumer = _Consumer(**options)
    except KafkaError as exc:
        msg = f"build consumer for group {group_id!r} at {settings.bootstrap_servers}: {exc!r}"
        raise StreamError(msg) from exc
    consumer.lakecast_settings = settings
    return consumer


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
    check_credentials(settings)
    options = producer_options(
        settings, mode=mode, transactional_id=transactional_id, client_id=client_id
    )
    try:
        producer = _Producer(**{**options, **overrides})
    except KafkaError as exc:
        msg = f"build {mode} producer at {settings.bootstrap_servers}: {exc!r}"
        raise StreamError(msg) from exc
    producer.lakecast_settings = settings
    if mode == "exactly_once":
        recover_lost_coordinator(producer)
    return producer


class _Admin(KafkaAdminClient):
    """A KafkaAdminClient that keeps the settings it was built from (their replication)."""

    lakecast_settings: KafkaSettings


def build_admin(settings: KafkaSettings, **overrides: Any) -> KafkaAdminClient:
    check_credentials(settings)
    options = {**settings.client_options(), "client_id": "lakecast-admin", **overrides}
    try:
        admin = _Admin(**options)
    except KafkaError as exc:
        msg = f"build admin client at {settings.bootstrap_servers}: {exc!r}"
        raise StreamError(msg) from exc
    admin.lakecast_settings = settings
    return admin


@dataclass(frozen=True)
class TopicSpec:
    """A topic to create; ``replication_factor`` None: as ``kafka.replication`` says."""

    name: str
    partitions: int = 1
    replication_factor: int | None = None
    configs: dict[str, str] = field(default_factory=dict)


def _replicated(
    admin: KafkaAdminClient, specs: list[TopicSpec], replication: TopicReplication | None
) -> list[TopicSpec]:
    """``specs`` with the replicas and ``min.insync.replicas`` of ``replication`` on this
    cluster where they leave them open (one replica where there is no setting)."""
    if replication is None:
        settings = getattr(admin, "lakecast_settings", None)
        replication = settings.replication if settings is not None else None
    open_specs = [spec for spec in specs if spec.replication_factor is None]
    if not open_specs:
        return specs
    if replication is None:
        return [_with(spec, 1, {}) if spec in open_specs else spec for spec in specs]
    try:
        # Fenced (stopped) brokers count: they are members of the cluster, and a topic
        # created while one is away must still be replicated to it when it comes back.
        brokers = len(admin.describe_cluster()["brokers"])
    except KafkaError as exc:
        msg = f"describe the cluster to size topic replication: {exc!r}"
        raise StreamError(msg) from exc
    replicas, min_isr = replication.on_cluster(brokers)
    isr = {"min.insync.replicas": str(min_isr)}
    return [
        spec if spec.replication_factor is not None else _with(spec, replicas, isr)
        for spec in specs
    ]


def _with(spec: TopicSpec, replicas: int, configs: dict[str, str]) -> TopicSpec:
    return TopicSpec(spec.name, spec.partitions, replicas, {**configs, **spec.configs})


def ensure_topics(
    admin: KafkaAdminClient,
    topics: Iterable[TopicSpec],
    *,
    timeout_ms: int = 30_000,
    replication: TopicReplication | None = None,
) -> list[str]:
    """Create the topics that do not exist yet and wait until they have leaders.

    A spec without a replication factor gets ``replication`` (default: that of the settings
    :func:`build_admin` was given; one replica for an admin built otherwise), capped at the
    cluster's broker count, with ``min.insync.replicas`` to match.

    On a secured cluster the topics are the admin principal's to create: a topic this
    principal may not create is left alone (logged), and a client that uses one that is
    missing meets its own clear refusal.

    Returns:
        The names of the topics this call created (existing ones are left as they are).

    Raises:
        StreamError: the broker refused a topic for another reason than that it exists.
    """
    try:
        # Only what is missing: a principal that may use a topic may not create it.
        existing = set(admin.list_topics())
    except KafkaError as exc:
        msg = f"list topics: {exc!r}"
        raise StreamError(msg) from exc
    wanted = list(topics)
    specs = [spec for spec in wanted if spec.name not in existing]
    if not specs:
        return []
    specs = _replicated(admin, specs, replication)
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
    created, refused, problems = [], set(), []
    for topic in response["topics"]:
        code = topic.get("error_code", 0)
        if code == 0:
            created.append(topic["name"])
        elif code == _TOPIC_AUTHORIZATION_FAILED:
            refused.add(topic["name"])
            log.warning(
                "topic %s is not ours to create (not authorized): left to the admin",
                topic["name"],
                extra={"topic": topic["name"]},
            )
        elif code != _TOPIC_ALREADY_EXISTS:
            problems.append(f"{topic['name']}: error {code} {topic.get('error_message')}")
    if problems:
        msg = "create topics: " + "; ".join(problems)
        raise StreamError(msg)
    ready = sorted({spec.name for spec in wanted} - refused)
    try:
        admin.wait_for_topics(ready, timeout_ms=timeout_ms)
    except KafkaError as exc:
        msg = f"create topics {ready}: not ready after {timeout_ms} ms ({exc!r})"
        raise StreamError(msg) from exc
    return created


def standard_topics(settings: KafkaSettings) -> list[TopicSpec]:
    """The topics of the streaming path, with the configured partition count."""
    names = settings.topics
    return [
        TopicSpec(names.events, settings.partitions),
        TopicSpec(names.predictions, settings.partitions),
        TopicSpec(names.dlq, 1),
        TopicSpec(names.metrics, 1),
        TopicSpec(names.served_features, 1),  # the workers' sample: a trickle
    ]
