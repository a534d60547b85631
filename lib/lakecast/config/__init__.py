"""The one typed configuration of lakecast.

Loaded from ``conf/lakecast.yaml`` (or the file named by ``LAKECAST_CONFIG``), merged with the
overlay files named by ``LAKECAST_CONFIG_OVERLAY`` (``lakecast local up --secure`` writes one per
Kafka principal), then overridden by environment variables ``LAKECAST__SECTION__FIELD=value``
(double underscores separate the levels, as in pydantic-settings). Unknown keys are refused; an
invalid file is a :class:`ConfigError` that names the file, the field and what was wrong, never
the value of a secret-looking or unknown key.

One module per area (``kafka``, ``serving``, ``models``, ``quality``, ``stack``), the shared
base in ``base`` and the loading in ``loading``; every public name is importable from here.
"""

from lakecast.config.base import (
    PROJECT_ROOT,
    SECRET_WORDS,
    SectionT,
    describe_validation_error,
    looks_secret,
    with_overrides,
)
from lakecast.config.kafka import KafkaSecurity, KafkaSettings, TopicNames, TopicReplication
from lakecast.config.loading import (
    CONFIG_ENV,
    DEFAULT_CONFIG,
    ENV_PREFIX,
    OVERLAY_ENV,
    Settings,
    load_settings,
    settings,
)
from lakecast.config.models import (
    GateSettings,
    OptimizationSettings,
    RegistrySettings,
    RolloutSettings,
)
from lakecast.config.quality import (
    DriftSettings,
    QualityDrops,
    QualitySettings,
    RetrainSettings,
    StalenessSettings,
)
from lakecast.config.serving import (
    AutoscalingSettings,
    LoopSettings,
    MetricsEndpointSettings,
    ServingSettings,
)
from lakecast.config.stack import LakeSettings, LocalStackSettings, SparkSettings

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "ENV_PREFIX",
    "OVERLAY_ENV",
    "PROJECT_ROOT",
    "SECRET_WORDS",
    "AutoscalingSettings",
    "DriftSettings",
    "GateSettings",
    "KafkaSecurity",
    "KafkaSettings",
    "LakeSettings",
    "LocalStackSettings",
    "LoopSettings",
    "MetricsEndpointSettings",
    "OptimizationSettings",
    "QualityDrops",
    "QualitySettings",
    "RegistrySettings",
    "RetrainSettings",
    "RolloutSettings",
    "SectionT",
    "ServingSettings",
    "Settings",
    "SparkSettings",
    "StalenessSettings",
    "TopicNames",
    "TopicReplication",
    "describe_validation_error",
    "load_settings",
    "looks_secret",
    "settings",
    "with_overrides",
]
