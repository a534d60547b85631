"""Watching served models: drift, outcome quality, staleness and when to retrain."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from lakecast.config.base import _Section


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
