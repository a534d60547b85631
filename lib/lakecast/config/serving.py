"""The streaming services: the Kafka loop, the inference worker, /metrics, the autoscaler."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from lakecast.config.base import _Section


class LoopSettings(_Section):
    """How the consume -> process -> produce loop batches and commits
    (:func:`lakecast.kafka.loop.run_loop`): its one set of defaults, which the worker's
    ``serving:`` section inherits."""

    delivery: Literal["exactly_once", "at_least_once"] = "exactly_once"
    # Reached only with a backlog: a batch is what has arrived.
    max_batch: int = Field(default=2000, ge=1, le=10_000)
    max_wait_ms: int = Field(default=50, ge=0, le=60_000)
    top_up_ms: int = Field(default=3, ge=0, le=1_000)
    # A batch that fails to commit this many times in a row (not for one of its records)
    # ends the loop: with the backoff, about 20 s of a broker being away.
    max_failures: int = Field(default=8, ge=1)
    retry_backoff_s: float = Field(default=0.5, gt=0)


class ServingSettings(LoopSettings):
    """The online inference worker (``lakecast stream worker``): its loop's settings and its own."""

    model: str = "purchase@champion"  # NAME@ALIAS, NAME:VERSION or NAME
    group_id: str = "lakecast-inference"
    # Native threads (OpenMP, BLAS) a model may score a batch with: workers scale by processes.
    model_threads: int = Field(default=1, ge=1, le=256)
    max_record_bytes: int = Field(default=1_000_000, ge=1_024)
    # An open transaction of a crashed worker is aborted by the broker after this long.
    transaction_timeout_ms: int = Field(default=30_000, ge=1_000)
    metrics_port: int = Field(default=9101, ge=0, le=65535)  # 0: no /metrics endpoint
    sample_interval_s: float = Field(default=5.0, gt=0)
    registry_poll_s: float = Field(default=2.0, gt=0)
    snapshot_poll_s: float = Field(default=30.0, gt=0)
    entity_features: str | None = None  # default: <lake root>/entity_features

    @property
    def loop(self) -> LoopSettings:
        """The loop's part of this section."""
        return LoopSettings.model_validate(self.model_dump(include=set(LoopSettings.model_fields)))


class MetricsEndpointSettings(_Section):
    """Every service's Prometheus ``/metrics`` endpoint (worker, monitor, autoscaler).

    Bound to 127.0.0.1 unless ``host`` says otherwise; TLS when a certificate and key are
    given (``tls_client_cafile`` then also requires a client certificate it signed); HTTP
    basic auth when a username is given, with the password read from a file (never argv).
    Each service keeps its own port (``serving.metrics_port``, ``--metrics-port``).
    """

    host: str = "127.0.0.1"
    tls_certfile: str | None = None
    tls_keyfile: str | None = None
    tls_client_cafile: str | None = None
    basic_auth_username: str | None = None
    basic_auth_password_file: str | None = None

    @model_validator(mode="after")
    def _pairs_are_complete(self) -> MetricsEndpointSettings:
        if bool(self.tls_certfile) != bool(self.tls_keyfile):
            msg = "tls_certfile and tls_keyfile go together: set both or neither"
            raise ValueError(msg)
        if self.tls_client_cafile and not self.tls_certfile:
            msg = "tls_client_cafile needs TLS: set tls_certfile and tls_keyfile too"
            raise ValueError(msg)
        if bool(self.basic_auth_username) != bool(self.basic_auth_password_file):
            msg = "basic_auth_username and basic_auth_password_file go together"
            raise ValueError(msg)
        return self


class AutoscalingSettings(_Section):
    """The autoscaler (``lakecast stream autoscaler``) and the local workers it starts."""

    # LAKECAST_CONFIG_OVERLAY of the workers its local pool starts, in place of the
    # autoscaler's own (os.pathsep-separated files). On a secured cluster the workers must
    # connect as the worker principal: the autoscaler's may not read `events`. The
    # autoscaler's overlay that `lakecast local up --secure` writes names the worker's.
    worker_config_overlay: str | None = None
