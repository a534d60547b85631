"""The Kafka sections: brokers, security, topic names, replication and client liveness."""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from lakecast.config.base import _Section, read_secret_file

log = logging.getLogger(__name__)


class KafkaSecurity(_Section):
    """Passed through to kafka-python (``security_protocol``, ``sasl_*``, ``ssl_*``).

    The password is given inline (``sasl_password``) or, better, as a file that only the
    service's user can read (``sasl_password_file``), read each time a client is built: child
    processes and Spark jobs then find it through the config, never on a command line.
    """

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: str | None = None  # relative paths are under the project root
    # SASL/PLAIN over a plaintext listener sends the password in clear: refused unless asked.
    allow_plaintext_sasl: bool = False
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaSecurity:
        if self.protocol.startswith("SASL") and self.sasl_mechanism is None:
            msg = f"security.protocol {self.protocol} needs security.sasl_mechanism"
            raise ValueError(msg)
        if self.sasl_password is not None and self.sasl_password_file is not None:
            msg = "give sasl_password or sasl_password_file, not both"
            raise ValueError(msg)
        if self.sasl_mechanism in {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} and not (
            self.sasl_username and (self.sasl_password or self.sasl_password_file)
        ):
            msg = (
                f"sasl_mechanism {self.sasl_mechanism} needs sasl_username and "
                "sasl_password or sasl_password_file"
            )
            raise ValueError(msg)
        if (
            self.protocol == "SASL_PLAINTEXT"
            and self.sasl_mechanism == "PLAIN"
            and not self.allow_plaintext_sasl
        ):
            msg = (
                "SASL_PLAINTEXT with sasl_mechanism PLAIN sends the password in clear: use "
                "SASL_SSL (or SCRAM), or set allow_plaintext_sasl: true to accept that"
            )
            raise ValueError(msg)
        if self.protocol.endswith("SSL") and not self.ssl_check_hostname:
            log.warning(
                "kafka.security.ssl_check_hostname is false: the broker's certificate is not "
                "matched against its host name, so anyone with a certificate from the same CA "
                "can pose as the broker"
            )
        return self

    def password(self) -> str | None:
        """The SASL password, from ``sasl_password`` or read from ``sasl_password_file``.

        Raises:
            ConfigError: the password file cannot be read or is empty (its content is not shown).
        """
        if self.sasl_password is not None:
            return self.sasl_password.get_secret_value()
        if self.sasl_password_file is None:
            return None
        return read_secret_file(self.sasl_password_file, "kafka.security.sasl_password_file")

    def client_options(self) -> dict[str, Any]:
        """The keyword arguments kafka-python's clients take for these settings."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.sasl_mechanism:
            options["sasl_mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            options["sasl_plain_username"] = self.sasl_username
        password = self.password()
        if password is not None:
            options["sasl_plain_password"] = password
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(self, name):
                options[name] = getattr(self, name)
        if self.protocol.endswith("SSL"):
            options["ssl_check_hostname"] = self.ssl_check_hostname
        return options


class TopicNames(_Section):
    events: str = "events"
    predictions: str = "predictions"
    dlq: str = "events.dlq"
    metrics: str = "metrics"
    # A sample of the feature vectors the workers served (drift and skew; see `drift:`).
    served_features: str = "served_features"


class TopicReplication(_Section):
    """How the topics lakecast creates are replicated (and the internal topics of a local cluster).

    Capped at the cluster: on ``n`` brokers a topic gets ``min(factor, n)`` replicas and
    ``min.insync.replicas`` ``min(min_insync_replicas, replicas)``, so one local broker gives
    1 / 1 and a three-node cluster 3 / 2: with acks=all (every transactional producer) a write
    then survives one broker lost and is refused, not silently under-replicated, with two.
    """

    factor: int = Field(default=3, ge=1)
    min_insync_replicas: int = Field(default=2, ge=1)

    @model_validator(mode="after")
    def _isr_within_factor(self) -> TopicReplication:
        if self.min_insync_replicas > self.factor:
            msg = (
                f"min_insync_replicas ({self.min_insync_replicas}) must not exceed "
                f"factor ({self.factor})"
            )
            raise ValueError(msg)
        return self

    def on_cluster(self, brokers: int) -> tuple[int, int]:
        """(replicas, min in-sync replicas) for a cluster of ``brokers`` nodes."""
        if brokers < 1:
            msg = f"a Kafka cluster has at least one broker, got {brokers}"
            raise ValueError(msg)
        replicas = min(self.factor, brokers)
        return replicas, min(self.min_insync_replicas, replicas)


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    security: KafkaSecurity = Field(default_factory=KafkaSecurity)
    topics: TopicNames = Field(default_factory=TopicNames)
    replication: TopicReplication = Field(default_factory=TopicReplication)
    partitions: int = Field(default=6, ge=1)
    request_timeout_ms: int = Field(default=30_000, gt=0)
    fetch_max_wait_ms: int = Field(default=500, gt=0)
    # A group member that stops heartbeating (kill -9) keeps its partitions this long, and a
    # rebalance waits for it: with kafka-python's 45 s one worker killed out of two stalled
    # the whole group (eager rebalance) for 43-45 s. A static member restarted within it
    # takes its partitions back at once; one that is not (its restart took 15-24 s on a
    # loaded 2-core machine) leaves them to the others after it: 10 s stalled them 10.6-11.6 s.
    # Brokers refuse less than 6 s (group.min.session.timeout.ms).
    session_timeout_ms: int = Field(default=6_000, ge=1_000)
    # Members learn of a rebalance (a worker joined or left) from their next heartbeat.
    heartbeat_interval_ms: int = Field(default=1_000, ge=100)
    # Static membership (KIP-345): a member that comes back under the same id within the
    # session timeout gets its partitions back at once, without a rebalance. It is an identity
    # of one process, set per process (the worker supervisor sets it per slot), never shared.
    group_instance_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,249}$")
    # kafka-python backs off reconnects exponentially up to this (its default is 30 s; Java's
    # 1 s): after a broker restart a client could wait that long before it tried again.
    reconnect_backoff_max_ms: int = Field(default=1_000, ge=50)

    @model_validator(mode="after")
    def _fetch_wait_below_request_timeout(self) -> KafkaSettings:
        # kafka-python refuses the same combination, but only when a consumer is built.
        if self.fetch_max_wait_ms >= self.request_timeout_ms:
            msg = (
                f"fetch_max_wait_ms ({self.fetch_max_wait_ms}) must be below "
                f"request_timeout_ms ({self.request_timeout_ms})"
            )
            raise ValueError(msg)
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            msg = (
                f"heartbeat_interval_ms ({self.heartbeat_interval_ms}) must be below "
                f"session_timeout_ms ({self.session_timeout_ms})"
            )
            raise ValueError(msg)
        return self

    def client_options(self) -> dict[str, Any]:
        """Bootstrap, security and reconnect options for any kafka-python client."""
        return {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "reconnect_backoff_max_ms": self.reconnect_backoff_max_ms,
            **self.security.client_options(),
        }

    def group_options(self) -> dict[str, Any]:
        """The options of a consumer that is a member of a group (liveness, static id)."""
        options: dict[str, Any] = {
            "session_timeout_ms": self.session_timeout_ms,
            "heartbeat_interval_ms": self.heartbeat_interval_ms,
        }
        if self.group_instance_id:
            options["group_instance_id"] = self.group_instance_id
        return options
