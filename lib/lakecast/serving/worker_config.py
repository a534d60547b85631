"""What an inference worker is configured with, and its command line.

:class:`WorkerOptions` are the command line's overrides of the config (``lakecast stream
worker --max-batch ...``), one typed object whether the worker runs in this process or in a
child (:meth:`WorkerOptions.argv`, :func:`worker_command`). :class:`WorkerConfig` is what a
worker runs with: the config's ``serving:`` section and topic names with those overrides
applied and validated as the config file is, so ``--max-batch 0`` is refused as
``serving.max_batch: 0`` would be.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lakecast.config import (
    DriftSettings,
    LoopSettings,
    ServingSettings,
    Settings,
    TopicNames,
    describe_validation_error,
    with_overrides,
)
from lakecast.errors import ConfigError

# Each option's flag on ``lakecast stream worker``, in the order a command line lists them.
FLAGS = {
    "model": "--model",
    "group_id": "--group",
    "delivery": "--delivery",
    "max_batch": "--max-batch",
    "max_wait_ms": "--max-wait-ms",
    "sample_interval_s": "--sample-interval",
    "registry": "--registry",
    "entity_features": "--entity-features",
    "events_topic": "--topic",
    "predictions_topic": "--predictions-topic",
    "dlq_topic": "--dlq-topic",
    "metrics_topic": "--metrics-topic",
    "transactional_id": "--transactional-id",
    "source_id": "--source-id",
}
# Options that replace a field of the ``serving:`` section (same name), and of the topics.
_SERVING = (
    "model",
    "group_id",
    "delivery",
    "max_batch",
    "max_wait_ms",
    "sample_interval_s",
    "entity_features",
)
_TOPICS = {
    "events_topic": "events",
    "predictions_topic": "predictions",
    "dlq_topic": "dlq",
    "metrics_topic": "metrics",
}


def _default_source_id() -> str:
    return f"worker-{socket.gethostname()}-{os.getpid()}"


class WorkerOptions(BaseModel):
    """The command line's overrides for one worker; None keeps the config's value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = None
    group_id: str | None = None
    delivery: Literal["exactly_once", "at_least_once"] | None = None
    max_batch: int | None = None
    max_wait_ms: int | None = None
    sample_interval_s: float | None = None
    registry: str | None = None
    entity_features: str | None = None
    events_topic: str | None = None
    predictions_topic: str | None = None
    dlq_topic: str | None = None
    metrics_topic: str | None = None
    transactional_id: str | None = None  # default: unique per process
    source_id: str | None = None

    @classmethod
    def parse(cls, **values: object) -> WorkerOptions:
        """The options from the command line's values.

        Raises:
            ConfigError: a value of the wrong type or choice, named by its flag.
        """
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(_with_flags(describe_validation_error(exc, "worker option"))) from exc

    def argv(self) -> list[str]:
        """These options as ``lakecast stream worker`` arguments (the set ones only)."""
        return [
            part
            for name, flag in FLAGS.items()
            if (value := getattr(self, name)) is not None
            for part in (flag, str(value))
        ]


def _with_flags(message: str) -> str:
    for name, flag in FLAGS.items():
        message = message.replace(f"{name}:", f"{flag}:")
    return message


class WorkerConfig(BaseModel):
    """Everything a worker needs besides its model and snapshot sources."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    serving: ServingSettings = Field(default_factory=ServingSettings)
    topics: TopicNames = Field(default_factory=TopicNames)
    drift: DriftSettings = Field(default_factory=DriftSettings)  # the served-feature sample
    transactional_id: str | None = None  # default: unique per process
    source_id: str = Field(default_factory=_default_source_id)

    @property
    def loop(self) -> LoopSettings:
        return self.serving.loop

    @classmethod
    def from_settings(
        cls, settings: Settings, options: WorkerOptions | None = None
    ) -> WorkerConfig:
        """The config's ``serving:`` section and topics, with ``options`` applied.

        Raises:
            ConfigError: an option makes a field invalid (``--max-batch 0``).
        """
        options = options or WorkerOptions()
        set_ = options.model_dump(exclude_none=True)
        what = "worker options over the config"
        try:
            serving = with_overrides(
                settings.serving, {k: v for k, v in set_.items() if k in _SERVING}, what
            )
            topics = with_overrides(
                settings.kafka.topics,
                {_TOPICS[k]: v for k, v in set_.items() if k in _TOPICS},
                what,
            )
        except ConfigError as exc:
            raise ConfigError(_with_flags(str(exc))) from exc
        source_id = {"source_id": options.source_id} if options.source_id else {}
        return cls(
            serving=serving,
            topics=topics,
            drift=settings.drift,
            transactional_id=options.transactional_id,
            **source_id,
        )


def worker_command(
    options: WorkerOptions | None = None,
    *,
    processes: int | None = None,
    metrics_port: int | None = None,
    extra_args: Sequence[str] = (),
    script: Path | None = None,
) -> list[str]:
    """The argv of a ``lakecast stream worker`` child on this interpreter (``script``: that
    entry point in its place, ``streaming/inference_worker.py``)."""
    entry = [str(script)] if script else ["-m", "lakecast.cli.main", "stream", "worker"]
    argv = [sys.executable, *entry, *(options or WorkerOptions()).argv()]
    if processes is not None:
        argv += ["--processes", str(processes)]
    if metrics_port is not None:
        argv += ["--metrics-port", str(metrics_port)]
    return [*argv, *extra_args]
