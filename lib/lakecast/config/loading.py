"""The whole configuration and how it is read: file, overlays, environment, validation."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from lakecast.config.base import PROJECT_ROOT, _Section, describe_validation_error
from lakecast.config.kafka import KafkaSettings
from lakecast.config.models import OptimizationSettings, RegistrySettings, RolloutSettings
from lakecast.config.quality import (
    DriftSettings,
    QualitySettings,
    RetrainSettings,
    StalenessSettings,
)
from lakecast.config.serving import AutoscalingSettings, MetricsEndpointSettings, ServingSettings
from lakecast.config.stack import LakeSettings, LocalStackSettings, SparkSettings
from lakecast.errors import ConfigError

ENV_PREFIX = "LAKECAST__"
CONFIG_ENV = "LAKECAST_CONFIG"
# YAML files (separated by os.pathsep) merged over the config file, before the environment.
OVERLAY_ENV = "LAKECAST_CONFIG_OVERLAY"
DEFAULT_CONFIG = PROJECT_ROOT / "conf" / "lakecast.yaml"


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
