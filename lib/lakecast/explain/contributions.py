"""Each feature's contribution to one score, by what the model is.

- scikit-learn HistGradientBoosting (the demo champion): *path contributions* (Saabas), found
  by walking every tree as its predict does. Each split on the event's path moves the node's
  value to the child's; that move is credited to the split's feature. Per tree, the leaf's
  value is the root's plus the moves, so ``bias`` (the model's baseline plus every root's
  value) plus the contributions is exactly the model's raw log-odds; the score is its
  sigmoid. Exact in that sense (not SHAP values, which average over feature orders).
- scikit-learn linear models (``coef_``, ``intercept_``): ``coef * x`` per feature in log-odds,
  with the intercept as ``bias``: exact.
- Keras: *integrated gradients* (Sundararajan et al. 2017) in probability space from the
  training means (the model's own ``Normalization`` layer holds them) to the event: the
  gradient is a central finite difference (backend-neutral: no tape), averaged over
  ``steps`` midpoints of the straight path, all in one predict call. An approximation:
  ``residual`` reports score - (baseline score + the contributions).

Anything else (an ONNX graph, another estimator) is refused by name; explain the version an
ONNX one was optimised from (its lineage names it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from lakecast.errors import LakecastError

Space = Literal["log_odds", "probability"]


@dataclass(frozen=True)
class Contributions:
    """``bias + sum(features.values())`` is ``output`` (in ``space``) up to ``residual``."""

    method: str
    space: Space
    bias: float
    features: dict[str, float]
    output: float
    residual: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        ranked = sorted(self.features.items(), key=lambda item: -abs(item[1]))
        return {
            "method": self.method,
            "space": self.space,
            "bias": self.bias,
            "output": self.output,
            "residual": self.residual,
            "features": dict(ranked),
            **self.notes,
        }


def _hist_gradient_boosting(model: Any, x: np.ndarray, names: list[str]) -> Contributions:
    if getattr(model, "n_trees_per_iteration_", 1) != 1:
        msg = "explain: a multi-class HistGradientBoosting model has no single score to explain"
        raise LakecastError(msg)
    contributions = np.zeros(len(names))
    bias = float(np.ravel(model._baseline_prediction)[0])
    for (tree,) in model._predictors:
        nodes = tree.nodes
        node = 0
        bias += float(nodes["value"][0])
        while not nodes["is_leaf"][node]:
            feature = int(nodes["feature_idx"][node])
            value = x[feature]
            if np.isnan(value):
                left = bool(nodes["missing_go_to_left"][node])
            else:
                left = value <= nodes["num_threshold"][node]
            child = int(nodes["left"][node] if left else nodes["right"][node])
            contributions[feature] += float(nodes["value"][child] - nodes["value"][node])
            node = child
    raw = bias + float(contributions.sum())
    return Contributions(
        method="tree path contributions (Saabas), exact in log-odds",
        space="log_odds",
        bias=bias,
        features=dict(zip(names, contributions.tolist(), strict=True)),
        output=raw,
        notes={"trees": len(model._predictors)},
    )


def _linear(model: Any, x: np.ndarray, names: list[str]) -> Contributions:
    coef = np.asarray(model.coef_, dtype=np.float64).reshape(-1)
    if coef.size != len(names):
        msg = f"explain: the linear model has {coef.size} coefficients for {len(names)} inputs"
        raise LakecastError(msg)
    parts = coef * x
    bias = float(np.ravel(model.intercept_)[0])
    return Contributions(
        method="coefficient times value, exact in log-odds",
        space="log_odds",
        bias=bias,
        features=dict(zip(names, parts.tolist(), strict=True)),
        output=bias + float(parts.sum()),
    )


def keras_baseline(model: Any) -> np.ndarray:
    """The training means the model's ``Normalization`` layer was built with."""
    for layer in model.layers:
        if type(layer).__name__ == "Normalization":
            mean = getattr(layer, "mean", None)
            if mean is None:
                mean = layer.input_mean
            return np.asarray(mean, dtype=np.float64).reshape(-1)
    msg = "explain: the Keras model has no Normalization layer to take the training means from"
    raise LakecastError(msg)


def integrated_gradients(
    predict: Any, x: np.ndarray, baseline: np.ndarray, names: list[str], steps: int = 32
) -> Contributions:
    """Integrated gradients of ``predict`` (rows -> scores) from ``baseline`` to ``x``."""
    k = x.size
    alphas = (np.arange(steps) + 0.5) / steps
    points = baseline + alphas[:, None] * (x - baseline)  # (steps, k)
    # A step of 1e-3 of the feature's own scale (at least 1e-3): float32 models resolve it.
    h = np.maximum(np.abs(x - baseline), 1.0) * 1e-3
    shifts = np.eye(k) * h
    rows = np.concatenate(
        [baseline[None, :], x[None, :]]
        + [points + shifts[j] for j in range(k)]
        + [points - shifts[j] for j in range(k)]
    )
    scores = np.asarray(predict(rows), dtype=np.float64).reshape(-1)
    at_baseline, at_x = float(scores[0]), float(scores[1])
    plus = scores[2 : 2 + k * steps].reshape(k, steps)
    minus = scores[2 + k * steps :].reshape(k, steps)
    gradients = ((plus - minus) / (2 * h[:, None])).mean(axis=1)
    parts = gradients * (x - baseline)
    return Contributions(
        method=f"integrated gradients from the training means ({steps} steps, "
        "central differences), approximate",
        space="probability",
        bias=at_baseline,
        features=dict(zip(names, parts.tolist(), strict=True)),
        output=at_x,
        residual=at_x - at_baseline - float(parts.sum()),
        notes={"baseline": dict(zip(names, baseline.tolist(), strict=True))},
    )


def contributions(
    flavor: str, model: Any, predict: Any, x: np.ndarray, names: list[str]
) -> Contributions:
    """The contributions of ``x``'s features to ``model``'s score (see the module docstring).

    Raises:
        LakecastError: the model is of a kind this cannot explain.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if flavor == "sklearn":
        if hasattr(model, "_predictors") and hasattr(model, "_baseline_prediction"):
            return _hist_gradient_boosting(model, x, names)
        if hasattr(model, "coef_") and hasattr(model, "intercept_"):
            return _linear(model, x, names)
        msg = f"explain: no contributions for a scikit-learn {type(model).__name__}"
        raise LakecastError(msg)
    if flavor == "keras":
        return integrated_gradients(predict, x, keras_baseline(model), names)
    msg = (
        f"explain: no contributions for the {flavor} flavor; explain the version it was "
        "optimised from (lineage optimized_from)"
    )
    raise LakecastError(msg)
