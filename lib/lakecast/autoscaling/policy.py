"""The autoscaling policy file (``conf/autoscale.json``): a typed, frozen model and its loader.

The file keeps the shape of the classic CPU scaling policy (``scale_up_policy`` /
``scale_down_policy``, each with ``metric_type``, ``target_value`` and ``action``) and adds the
consumer-lag targets of KEDA's Kafka scaler, the replica bounds, the HPA windows and, optionally,
a ``predictive`` section that scales ahead of a forecast of the load. Anything
unknown or ill-typed is refused with a :class:`ConfigError` that names the file and the field,
because a typo in a scaling policy otherwise shows up only as a fleet that never scales.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from lakecast.config import describe_validation_error
from lakecast.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_POLICY = PROJECT_ROOT / "conf" / "autoscale.json"

MetricType = Literal["CPUUtilization", "RecordsInPerSecond"]

# The sample field each policy metric type reads; also the name a decision reports.
METRIC_FIELDS: dict[str, str] = {
    "CPUUtilization": "cpu_percent",
    "RecordsInPerSecond": "records_in_per_s",
}

# The classic policy file names its action with a plain word: a step of one instance.
NAMED_ACTIONS: dict[str, int] = {"add_instance": 1, "remove_instance": -1}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScalingAction(_Model):
    """What a policy does when its rule fires.

    ``proportional`` is the HPA rule ``ceil(current * value / target)``; ``step`` is the classic
    fixed ``adjustment`` (``+1`` to add one replica, ``-1`` to remove one). Either way the
    change is then limited by the policy's ``max_step``.
    """

    type: Literal["proportional", "step"] = "proportional"
    adjustment: int | None = None

    @model_validator(mode="after")
    def _adjustment_matches_type(self) -> ScalingAction:
        if self.type == "step" and not self.adjustment:
            msg = "a step action needs a non-zero adjustment, e.g. {'type':'step','adjustment':1}"
            raise ValueError(msg)
        if self.type == "proportional" and self.adjustment is not None:
            msg = "a proportional action takes no adjustment (use type 'step' for a fixed one)"
            raise ValueError(msg)
        return self


class ScalePolicy(_Model):
    """One direction of the classic policy: a metric, its target and the action to take."""

    metric_type: MetricType = "CPUUtilization"
    target_value: float = Field(gt=0)
    action: ScalingAction = Field(default_factory=ScalingAction)

    @field_validator("action", mode="before")
    @classmethod
    def _named_action(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if value not in NAMED_ACTIONS:
            names = ", ".join(repr(name) for name in NAMED_ACTIONS)
            msg = f"unknown action {value!r}: use {names} or an object such as {{'type':'step'}}"
            raise ValueError(msg)
        return {"type": "step", "adjustment": NAMED_ACTIONS[value]}

    @property
    def metric(self) -> str:
        """The sample field this policy reads (``cpu_percent``, ``records_in_per_s``)."""
        return METRIC_FIELDS[self.metric_type]


class ConsumerLagPolicy(_Model):
    """KEDA's Kafka scaler: ``ceil(total_lag / lag_threshold)``, at most one per partition."""

    lag_threshold: float = Field(default=100, gt=0)
    activation_lag_threshold: float = Field(default=0, ge=0)
    cap_at_partitions: bool = True


class ScalingWindows(_Model):
    """How often to decide and how long to wait before acting on a lower recommendation."""

    evaluation_interval_s: float = Field(default=15, gt=0)
    scale_down_stabilization_s: float = Field(default=300, ge=0)
    sample_max_age_s: float = Field(default=30, gt=0)


class AnomalyHold(_Model):
    """Anomalies from the monitor that block scale-down while they are open."""

    hold_s: float = Field(default=120, ge=0)
    metrics: tuple[str, ...] = ("records_in_per_s", "lag")


class PredictivePolicy(_Model):
    """Scale ahead of a forecast of the arrival rate (see :mod:`lakecast.autoscaling.predictive`).

    Once the forecast has history, ``ceil(peak over the horizon / records_per_replica)`` takes
    the place of the utilisation policies (which only see the load that has already arrived);
    the lag rule stays the fast path for load nobody forecast, and the scale-down stabilisation
    window stays the brake.
    """

    records_per_replica: float = Field(gt=0)
    season_s: float = Field(default=86_400, gt=0)
    seasons: int = Field(default=3, ge=1)
    horizon_s: float = Field(default=120, gt=0)
    level_window_s: float = Field(default=300, gt=0)
    step_s: float = Field(default=15, gt=0)

    @model_validator(mode="after")
    def _step_within_horizon(self) -> PredictivePolicy:
        if self.step_s > self.horizon_s:
            msg = f"step_s ({self.step_s:g}) must not exceed horizon_s ({self.horizon_s:g})"
            raise ValueError(msg)
        return self


def _default_up() -> ScalePolicy:
    return ScalePolicy(target_value=70)


def _default_down() -> ScalePolicy:
    return ScalePolicy(target_value=30)


class AutoscalePolicy(_Model):
    """Everything the autoscaler reads from ``conf/autoscale.json``."""

    scale_up_policy: ScalePolicy = Field(default_factory=_default_up)
    scale_down_policy: ScalePolicy = Field(default_factory=_default_down)
    consumer_lag: ConsumerLagPolicy | None = Field(default_factory=ConsumerLagPolicy)
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=10, ge=1)
    max_step: int = Field(default=4, ge=1)
    tolerance: float = Field(default=0.1, ge=0, lt=1)
    windows: ScalingWindows = Field(default_factory=ScalingWindows)
    anomalies: AnomalyHold = Field(default_factory=AnomalyHold)
    predictive: PredictivePolicy | None = None

    @model_validator(mode="after")
    def _coherent(self) -> AutoscalePolicy:
        if self.min_replicas > self.max_replicas:
            msg = (
                f"min_replicas ({self.min_replicas}) must not exceed "
                f"max_replicas ({self.max_replicas})"
            )
            raise ValueError(msg)
        up, down = self.scale_up_policy, self.scale_down_policy
        if up.action.type == "step" and (up.action.adjustment or 0) < 0:
            msg = f"scale_up_policy.action.adjustment must be positive, got {up.action.adjustment}"
            raise ValueError(msg)
        if down.action.type == "step" and (down.action.adjustment or 0) > 0:
            msg = (
                "scale_down_policy.action.adjustment must be negative, "
                f"got {down.action.adjustment}"
            )
            raise ValueError(msg)
        # Between the two targets lies the band where nothing happens; inverted, the policies
        # would fight each other on every evaluation.
        if up.metric_type == down.metric_type and down.target_value > up.target_value:
            msg = (
                f"scale_down_policy.target_value ({down.target_value}) must not exceed "
                f"scale_up_policy.target_value ({up.target_value}) for {up.metric_type}"
            )
            raise ValueError(msg)
        return self


def parse_policy(data: object, source: str = "<policy>") -> AutoscalePolicy:
    """Validate an already-decoded policy document, strictly typed as in a JSON file.

    Raises:
        ConfigError: a field is missing, unknown, of the wrong type or out of range.
    """
    if not isinstance(data, dict):
        msg = f"autoscaling policy {source} must hold a JSON object, found {type(data).__name__}"
        raise ConfigError(msg)
    try:
        text = json.dumps(data)
    except (TypeError, ValueError) as exc:
        msg = f"autoscaling policy {source} holds values JSON cannot carry: {exc}"
        raise ConfigError(msg) from exc
    try:
        # Strict JSON validation: "2" or true is not a replica count, 2.0 is not a step.
        return AutoscalePolicy.model_validate_json(text, strict=True)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, f"autoscaling policy {source}")) from exc


def load_policy(path: str | Path | None = None) -> AutoscalePolicy:
    """Read and validate an autoscaling policy file (``conf/autoscale.json`` by default).

    Raises:
        ConfigError: the file is missing or unreadable, is not JSON (with line and column),
            or a field is invalid; the message names the file and the field.
    """
    file = Path(path) if path is not None else DEFAULT_POLICY
    if not file.is_file():
        msg = f"autoscaling policy file {file} does not exist"
        raise ConfigError(msg)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"autoscaling policy file {file} cannot be read: {exc}"
        raise ConfigError(msg) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = (
            f"autoscaling policy file {file} is not valid JSON: {exc.msg} "
            f"at line {exc.lineno} column {exc.colno}"
        )
        raise ConfigError(msg) from exc
    return parse_policy(data, str(file))
