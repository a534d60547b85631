"""Bounds checks for tree ensembles loaded from skops artifacts, run before the first predict.

HistGradientBoosting's ``TreePredictor`` and scikit-learn's ``Tree`` walk their node arrays in
Cython without bounds checks. A node whose child index points outside the array (or back to
an ancestor) or whose feature index is beyond the input width would read foreign memory or
loop forever. Every internal node must have children after itself and inside the array
(trees are stored in pre-order, so a walk always ends), and a feature index below the width.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from lakecast.errors import UnsafeArtifactError


def check_estimator_trees(estimator: Any, where: str) -> int:
    """Check every tree reachable from ``estimator`` (pipelines and ensembles included).

    Returns:
        The number of trees checked.

    Raises:
        UnsafeArtifactError: naming the tree, the node, the field and the bad value.
    """
    checked = 0
    for path, obj, n_features in _walk(estimator, "model", None):
        kind = type(obj).__name__
        if kind == "TreePredictor":
            _check_predictor(obj, n_features, f"{where}: {path}")
            checked += 1
        elif kind == "Tree":
            _check_sklearn_tree(obj, n_features, f"{where}: {path}")
            checked += 1
    return checked


def _walk(obj: Any, path: str, n_features: int | None) -> Iterator[tuple[str, Any, int | None]]:
    n_features = getattr(obj, "n_features_in_", n_features)
    if type(obj).__name__ in {"TreePredictor", "Tree"}:
        yield path, obj, n_features
        return
    predictors = getattr(obj, "_predictors", None)
    if isinstance(predictors, list):
        for i, per_iteration in enumerate(predictors):
            for k, predictor in enumerate(per_iteration):
                yield from _walk(predictor, f"{path}._predictors[{i}][{k}]", n_features)
    tree = getattr(obj, "tree_", None)
    if tree is not None:
        yield from _walk(tree, f"{path}.tree_", n_features)
    steps = getattr(obj, "steps", None)
    if isinstance(steps, list):
        for step_name, step in steps:
            yield from _walk(step, f"{path}[{step_name!r}]", None)
    for attr in ("estimators_", "calibrated_classifiers_"):
        children = getattr(obj, attr, None)
        if isinstance(children, list | np.ndarray):
            for i, child in enumerate(np.ravel(np.asarray(children, dtype=object))):
                yield from _walk(child, f"{path}.{attr}[{i}]", n_features)
    for attr in ("estimator", "base_estimator"):
        child = getattr(obj, attr, None)
        if child is not None and hasattr(child, "get_params"):
            yield from _walk(child, f"{path}.{attr}", n_features)


def _check_children(
    left: np.ndarray,
    right: np.ndarray,
    internal: np.ndarray,
    features: np.ndarray,
    n_features: int | None,
    where: str,
) -> None:
    count = len(left)
    if count == 0:
        msg = f"{where}: tree has no nodes"
        raise UnsafeArtifactError(msg)
    index = np.arange(count)
    for field, child in (("left", left), ("right", right)):
        bad = internal & ((child <= index) | (child >= count))
        if bad.any():
            node = int(np.flatnonzero(bad)[0])
            msg = (
                f"{where}: node {node} has {field} child {int(child[node])}, outside "
                f"({node}, {count}); refusing to load a tree whose walk could leave its array"
            )
            raise UnsafeArtifactError(msg)
    if n_features is not None:
        bad = internal & ((features < 0) | (features >= n_features))
        if bad.any():
            node = int(np.flatnonzero(bad)[0])
            msg = (
                f"{where}: node {node} splits on feature {int(features[node])}, "
                f"the model has {n_features} features"
            )
            raise UnsafeArtifactError(msg)


def _check_predictor(predictor: Any, n_features: int | None, where: str) -> None:
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE

    nodes = predictor.nodes
    if not isinstance(nodes, np.ndarray) or nodes.dtype != PREDICTOR_RECORD_DTYPE:
        found = getattr(nodes, "dtype", type(nodes).__name__)
        msg = f"{where}: node array has dtype {found}, expected {PREDICTOR_RECORD_DTYPE}"
        raise UnsafeArtifactError(msg)
    internal = ~nodes["is_leaf"].astype(bool)
    left = nodes["left"].astype(np.int64)
    right = nodes["right"].astype(np.int64)
    features = nodes["feature_idx"].astype(np.int64)
    _check_children(left, right, internal, features, n_features, where)
    categorical = internal & nodes["is_categorical"].astype(bool)
    if categorical.any():
        bitsets = len(predictor.raw_left_cat_bitsets)
        bad = categorical & (nodes["bitset_idx"].astype(np.int64) >= bitsets)
        if bad.any():
            node = int(np.flatnonzero(bad)[0])
            msg = f"{where}: node {node} uses bitset {int(nodes['bitset_idx'][node])} of {bitsets}"
            raise UnsafeArtifactError(msg)


def _check_sklearn_tree(tree: Any, n_features: int | None, where: str) -> None:
    left = np.asarray(tree.children_left, dtype=np.int64)
    right = np.asarray(tree.children_right, dtype=np.int64)
    internal = (left != -1) | (right != -1)  # a leaf has both children -1 (TREE_LEAF)
    features = np.asarray(tree.feature, dtype=np.int64)
    width = n_features if n_features is not None else int(tree.n_features)
    _check_children(left, right, internal, features, width, where)
