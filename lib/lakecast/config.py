"""The one typed configuration of lakecast.

Loaded from ``conf/lakecast.yaml`` (or the file named by ``LAKECAST_CONFIG``), merged with the
overlay files named by ``LAKECAST_CONFIG_OVERLAY`` (``lakecast local up --secure`` writes one per
Kafka principal), then overridden by environment variables ``LAKECAST__SECTION__FIELD=value``
(double underscores separate the levels, as in pydantic-settings). Unknown keys are refused; an
invalid file is a :class:`ConfigError` that names the file, the field and what was wrong, never
the value of a secret-looking or unknown key.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from lakecast.errors import ConfigError

log = logging.getLogger(__name__)

ENV_PREFIX = "LAKECAST__"
CONFIG_ENV = "LAKECAST_CONFIG"
# YAML files (separated by os.pathsep) merged over the config file, before the environment.
OVERLAY_ENV = "LAKECAST_CONFIG_OVERLAY"
# A config error shows no value of a key whose name holds one of these (nor of an unknown key:
# a typo of `sasl_password` is still a password).
SECRET_WORDS = ("password", "secret", "token", "key")
# Under spark-submit the package is imported from a zip in --py-files, so the project root is
# passed explicitly (spark-submit.sh exports LAKECAST_HOME); otherwise it is the source tree.
PROJECT_ROOT = Path(os.environ.get("LAKECAST_HOME") or Path(__file__).resolve().parents[2])
DEFAULT_CONFIG = PROJECT_ROOT / "conf" / "lakecast.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


SectionT = TypeVar("SectionT", bound=BaseModel)


class LakeSettings(_Section):
    """Where the Delta tables live: a local folder or any Hadoop filesystem URI."""

    root: str = "lake"

    def table(self, name: str) -> str:
        """The URI of a table under the lake root."""
        return f"{self.root.rstrip('/')}/{name}"


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
        path = Path(self.sasl_password_file)
        path = path if path.is_absolute() else PROJECT_ROOT / path
        try:
            secret = path.read_text().strip()
        except OSError as exc:
            msg = f"kafka.security.sasl_password_file {path}: cannot read it ({exc.strerror})"
            raise ConfigError(msg) from exc
        if not secret:
            msg = f"kafka.security.sasl_password_file {path} is empty"
            raise ConfigError(msg)
        return secret

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


class RegistrySettings(_Section):
    """The model registry: Delta tables and content-addressed artifacts."""

    root: str | None = None  # default: <lake root>/registry


class SparkSettings(_Section):
    master: str = "local[*]"
    app_name: str = "lakecast"
    defaults_file: str = "conf/spark-defaults.conf"
    shuffle_partitions: int = Field(default=8, ge=1)


class LocalStackSettings(_Section):
    """Ports and folders of the embedded stack that ``lakecast local up`` starts."""

    state_dir: str = ".state"
    jars_dir: str = ".jars"
    host: str = "127.0.0.1"
    broker_port: int = Field(default=9092, ge=1, le=65535)
    controller_port: int = Field(default=9093, ge=1, le=65535)
    spark_master_port: int = Field(default=7077, ge=1, le=65535)
    spark_master_ui_port: int = Field(default=8080, ge=1, le=65535)
    broker_start_timeout_s: float = Field(default=90.0, gt=0)
    broker_heap: str = "512m"

    @model_validator(mode="after")
    def _distinct_ports(self) -> LocalStackSettings:
        ports = [self.broker_port, self.controller_port, self.spark_master_port]
        if len(set(ports)) != len(ports):
            msg = f"broker_port, controller_port and spark_master_port must differ, got {ports}"
            raise ValueError(msg)
        return self


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


class OptimizationSettings(_Section):
    """Parity tolerances of ``lakecast models optimize``: the largest |score difference| from
    its source, over the source's holdout, an optimised version may show and be registered.

    ``exact`` is for conversions meant to compute the same function (``onnx``): float
    rounding only. ``int8`` is for ONNX Runtime's dynamic quantisation (``onnx-int8``):
    weights and activations in 8 bits move a probability by a few hundredths (max 0.03 and
    0.04 measured on MLPs of the demo's shape over synthetic rows), so 0.05 refuses a
    conversion that went wrong, not one that merely quantised.
    """

    exact_tolerance: float = Field(default=1e-6, gt=0, le=1)
    int8_tolerance: float = Field(default=0.05, gt=0, le=1)


class GateSettings(_Section):
    """The pre-rollout gates' defaults (``lakecast.rollout.gates``); a rollout file's ``gates:``
    section overrides any of them for its rollout.

    ``metric_margin`` is a non-inferiority margin: a candidate may replace the champion when
    its holdout metric is at most this much worse. 0.005 of ROC AUC lets an equally good
    retrain through (the champion's recipe and seed on the demo table: 0.8130 both) and
    refuses one that ranks visibly worse: on the demo's 100k-event table the MLP scores
    0.7984 and a boosted-trees retrain with another seed 0.7990 (early stopping's random
    validation split) against the champion's 0.8130; the 0.02 the demo's canary allowed
    before let the MLP through. ``min_holdout`` is the bar a first champion (no champion to
    compare with) must reach on its own holdout; None turns it off.
    """

    metric: str = "holdout_roc_auc"  # as jobs/train.py records it
    higher_is_better: bool = True
    metric_margin: float = Field(default=0.005, ge=0)
    latency_margin: float = Field(default=0.10, ge=0)  # allowed relative increase
    min_holdout: float | None = 0.6


class RolloutSettings(_Section):
    """Rollouts (``lakecast deploy``) and every other move of a serving alias."""

    gates: GateSettings = Field(default_factory=GateSettings)

    # Models whose rollout holds before its last step to 100 % until someone runs
    # `lakecast deploy approve`; the environment gives them comma-separated.
    approval_required: tuple[str, ...] = ()

    @field_validator("approval_required", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


class DriftSettings(_Section):
    """Served-feature sampling (the worker) and the drift and skew checks
    (``jobs/feature_drift.py``) that compare the sample with the serving version's training set.

    PSI: 0.1 is the usual "watch", 0.25 the usual "act" (credit-scoring practice); 0.2 flags a
    shift before it is large. KS: the largest gap between the two empirical CDFs; 0.1 is an
    effect size, not a significance level (with thousands of rows any shift is significant).
    """

    # Share of served events whose model-input vector is logged, chosen by a hash of the event
    # id (the same events whatever the worker), sent after the batch commits, outside its
    # transaction; 0 turns sampling off.
    sample_rate: float = Field(default=0.01, ge=0, le=1)
    # Samples waiting for the background sender; past this they are dropped and counted,
    # so a slow or absent broker never slows serving.
    sample_queue: int = Field(default=10_000, ge=1)
    psi_threshold: float = Field(default=0.2, gt=0)
    ks_threshold: float = Field(default=0.1, gt=0, le=1)
    bins: int = Field(default=10, ge=2, le=100)  # PSI bins: quantiles of the training set
    min_rows: int = Field(default=200, ge=1)  # fewer live rows in the window: no verdict
    reference_rows: int = Field(default=100_000, ge=100)  # training rows read, at most
    skew_tolerance: float = Field(default=1e-6, gt=0)  # online vs batch, per feature


class QualityDrops(_Section):
    """How far a live outcome metric may fall behind the version's own holdout figure before
    the monitor alerts: AUC may drop by ``auc``; log loss, Brier and ECE may rise by theirs.

    A version's live AUC varies from day to day by about 0.01-0.02 on a few thousand
    labelled events, so 0.05 is a drop that is not noise; log loss and Brier move with the
    base rate too, hence their wider relative allowances.
    """

    auc: float = Field(default=0.05, ge=0)
    log_loss: float = Field(default=0.10, ge=0)
    brier: float = Field(default=0.02, ge=0)
    ece: float = Field(default=0.05, ge=0)


class QualitySettings(_Section):
    """Prediction quality from realised outcomes (``jobs/evaluate_quality.py``, the monitor).

    The label of an event (a purchase later in the same session, on the same UTC date; see
    ``lakecast.features.training_set``) is final once its UTC date has ended: the horizon.
    ``label_delay_hours`` more covers events that arrive late; a day is evaluated only after
    both. ``min_count`` labelled predictions make a group's figures worth an alert.
    """

    label_delay_hours: float = Field(default=1.0, ge=0)
    min_count: int = Field(default=200, ge=1)
    bins: int = Field(default=10, ge=2, le=100)
    max_drop: QualityDrops = Field(default_factory=QualityDrops)


class RetrainSettings(_Section):
    """When ``lakecast retrain`` retrains a model, and how the new version is rolled out.

    Triggers: ``quality`` (the latest quality record of the live version has a metric beyond
    ``quality.max_drop`` of its holdout figure), ``drift`` (at least ``drift_min_features``
    features of the live version drifted in the latest drift run), ``age`` (the live version
    is older than ``max_model_age_days``). The candidate is the champion's recipe trained on
    the last ``train_days`` labelled days (fresh data, so a changed relationship dominates),
    the last ``holdout_days`` of them held out; it goes through the gates and a canary whose
    analysis judges outcome metrics over the last ``canary_days`` labelled days.
    """

    triggers: tuple[Literal["quality", "drift", "age"], ...] = ("quality", "drift", "age")
    drift_min_features: int = Field(default=1, ge=1)
    max_model_age_days: float = Field(default=30.0, gt=0)
    train_days: int = Field(default=3, ge=2)
    holdout_days: int = Field(default=1, ge=1)
    canary_days: int = Field(default=1, ge=1)
    canary_steps: tuple[float, ...] = (50.0, 100.0)
    canary_step_seconds: float = Field(default=1.0, gt=0)
    seed: int = 42

    @model_validator(mode="after")
    def _holdout_within_training(self) -> RetrainSettings:
        if self.holdout_days >= self.train_days:
            msg = f"holdout_days ({self.holdout_days}) must be below train_days ({self.train_days})"
            raise ValueError(msg)
        # The canary replays the newest days: they must be ones the candidate never saw.
        if self.canary_days > self.holdout_days:
            msg = (
                f"canary_days ({self.canary_days}) must not exceed holdout_days "
                f"({self.holdout_days}): the canary would judge the candidate on its training rows"
            )
            raise ValueError(msg)
        return self


class StalenessSettings(_Section):
    """The monitor's watch on model and entity-snapshot age (``kind=staleness`` records).

    Every ``check_interval_s`` the monitor resolves each of ``models`` (``NAME@ALIAS``) and
    writes its age since the end of its training data (the last holdout day) and the age of
    the newest entity-feature snapshot; over ``max_model_age_days`` or
    ``max_snapshot_age_hours`` is an alert. The snapshot is rebuilt daily, so a day and a
    half means a missed run.
    """

    models: tuple[str, ...] = ("purchase@champion",)
    max_model_age_days: float = Field(default=30.0, gt=0)
    max_snapshot_age_hours: float = Field(default=36.0, gt=0)
    check_interval_s: float = Field(default=300.0, gt=0)

    @field_validator("models", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


class Settings(_Section):
    """Everything lakecast reads from ``conf/lakecast.yaml``."""

    lake: LakeSettings = Field(default_factory=LakeSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    spark: SparkSettings = Field(default_factory=SparkSettings)
    local: LocalStackSettings = Field(default_factory=LocalStackSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    rollout: RolloutSettings = Field(default_factory=RolloutSettings)
    autoscaling: AutoscalingSettings = Field(default_factory=AutoscalingSettings)
    metrics: MetricsEndpointSettings = Field(default_factory=MetricsEndpointSettings)
    optimization: OptimizationSettings = Field(default_factory=OptimizationSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    retrain: RetrainSettings = Field(default_factory=RetrainSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    staleness: StalenessSettings = Field(default_factory=StalenessSettings)
    source: str = Field(default="<defaults>", exclude=True)

    @property
    def registry_root(self) -> str:
        return self.registry.root or self.lake.table("registry")

    def project_path(self, relative: str) -> Path:
        """A path from the config resolved against the project root (absolute stays)."""
        path = Path(relative)
        return path if path.is_absolute() else PROJECT_ROOT / path


def _resolve_lake_root(root: str) -> str:
    # A bare relative folder means one under the project, whatever the working directory;
    # URIs (s3a://, abfss://, file:/...) are left as they are.
    if "://" in root or root.startswith("file:") or Path(root).is_absolute():
        return root
    return str(PROJECT_ROOT / root)


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = key[len(ENV_PREFIX) :].lower().split("__")
        node = overrides
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return overrides


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def looks_secret(name: str) -> bool:
    """Whether a config key's name says its value is a secret (``sasl_password``, ``token``)."""
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS)


def describe_validation_error(error: ValidationError, what: str) -> str:
    """One line naming every invalid field, its problem and the value found.

    The value is left out where the key looks like a secret or is unknown (a misspelt
    ``sasl_pasword: hunter2`` must not print the password it holds).
    """
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "<root>"
        found = item.get("input")
        hidden = item["type"] == "extra_forbidden" or any(
            looks_secret(str(part)) for part in item["loc"]
        )
        if isinstance(found, dict):
            shown = ""
        elif hidden:
            shown = " (value not shown)"
        else:
            shown = f" (found {found!r})"
        problems.append(f"{field}: {item['msg']}{shown}")
    return f"invalid {what}: " + "; ".join(problems)


def with_overrides(section: SectionT, update: Mapping[str, object], what: str) -> SectionT:
    """``section`` with the fields of ``update`` replaced, validated as the config file is.

    Raises:
        ConfigError: a replaced value is invalid (``what`` says where it came from).
    """
    try:
        return type(section).model_validate({**section.model_dump(), **update})
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, what)) from exc


def _read_mapping(file: Path) -> dict[str, Any]:
    if not file.is_file():
        msg = f"config file {file} does not exist (set {CONFIG_ENV} or create it)"
        raise ConfigError(msg)
    try:
        raw = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        # PyYAML's own message quotes the offending line, which may hold a password.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        msg = f"config file {file} is not valid YAML: {problem}{where}"
        raise ConfigError(msg) from exc
    if not isinstance(raw, dict):
        msg = f"config file {file} must hold a mapping at the top, found {type(raw).__name__}"
        raise ConfigError(msg)
    return raw


def load_settings(
    path: str | Path | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Read, override from the environment and validate the configuration.

    Args:
        path: the YAML file; defaults to ``$LAKECAST_CONFIG`` or ``conf/lakecast.yaml``.
            The files of ``$LAKECAST_CONFIG_OVERLAY`` are merged over it, in order.
        environ: the environment to take ``LAKECAST__...`` overrides from (``os.environ``).

    Raises:
        ConfigError: the file is missing, is not YAML, or a field is invalid or unknown.
    """
    env = dict(os.environ if environ is None else environ)
    file = Path(path or env.get(CONFIG_ENV) or DEFAULT_CONFIG)
    raw = _read_mapping(file)
    overlays = [Path(part) for part in env.get(OVERLAY_ENV, "").split(os.pathsep) if part]
    for overlay in overlays:
        raw = _merge(raw, _read_mapping(overlay))
    data = _merge(raw, _env_overrides(env))
    what = f"config {file}" + "".join(f" + overlay {overlay}" for overlay in overlays)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, what)) from exc
    lake = settings.lake.model_copy(update={"root": _resolve_lake_root(settings.lake.root)})
    return settings.model_copy(update={"lake": lake, "source": str(file)})


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings, loaded once."""
    return load_settings()
