"""Models after training: the registry, optimisation parity, pre-rollout gates, rollouts."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from lakecast.config.base import _Section


class RegistrySettings(_Section):
    """The model registry: Delta tables and content-addressed artifacts."""

    root: str | None = None  # default: <lake root>/registry


class OptimizationSettings(_Section):
    """Parity tolerances of ``lakecast models optimize``: the largest |score difference| from
    its source, over the source's holdout, an optimised version may show and be registered.

    ``exact`` is for conversions meant to compute the same function (``onnx``): float
    rounding only. ``reduced_precision`` is for the kinds that compute in fewer bits:
    ONNX Runtime's dynamic int8 quantisation (``onnx-int8``: max 0.0165 on the tests' MLP,
    0.03-0.04 on MLPs of the demo's shape over synthetic rows) and a tree ensemble in
    float32 (``onnx-fp32``: max 1.3e-7 on the tests' three tree models' holdouts, where no
    feature sat within float32 rounding above a threshold; a row that does moves by its two
    subtrees' difference, 0.01-0.24 measured). 0.05 refuses a conversion that went wrong, not
    one that merely rounded.
    """

    exact_tolerance: float = Field(default=1e-6, gt=0, le=1)
    reduced_precision_tolerance: float = Field(default=0.05, gt=0, le=1)


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
