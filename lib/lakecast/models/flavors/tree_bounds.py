"""Bounds checks for the trees of a loaded scikit-learn model, run before its first predict.

scikit-learn's ``Tree`` and HistGradientBoosting's ``TreePredictor`` walk their node arrays
in Cython without bounds checks: a child index outside the array (or back to an ancestor), a
feature index beyond the input's width, or a categorical split whose bitset row does not
exist reads foreign memory or loops forever. So the whole object graph of the model is walked
(attributes, lists, tuples, sets, dicts, object arrays, the state of objects without a
``__dict__``; cycle-safe, with a depth and a size cap) and every tree found is checked.

The width a tree may index is the registered signature's: the loader passes it in, and a
child narrows it (its ``n_features_in_``, a bagging ensemble's feature subset, the stacked
predictions a final estimator reads) but never widens it: an artifact sets every attribute,
and a forest calls its trees without an input check, so a child's wider claim is ignored. An
estimator that owns trees must declare its width (its own ``predict`` checks the input
against it, which is what makes a narrower claim safe). So a tree behind a transformer that
widens the input (one-hot encoding in a pipeline) may only split on the first columns of the
signature's width: the transformer's output width cannot be known without running it.
"""

from __future__ import annotations

import functools
import numbers
from typing import Any

import numpy as np

from lakecast.errors import UnsafeArtifactError

MAX_DEPTH = 64
MAX_OBJECTS = 500_000
_BITSET_WORDS = 8  # sklearn's bitsets are 8 uint32 words: 256 categories
_SCALARS = (str, bytes, bool, numbers.Number, np.generic, np.dtype, type)


def check_estimator_trees(estimator: Any, where: str, *, width: int) -> int:
    """Check every tree reachable from ``estimator`` against the input ``width``.

    Args:
        estimator: the loaded model.
        where: ``model 'x' version 1.0.0``, for messages.
        width: the number of input columns of the registered signature.

    Returns:
        The number of trees (``Tree`` and ``TreePredictor`` objects) checked.

    Raises:
        UnsafeArtifactError: naming the artifact, the path in the object graph, the field and
            the bad value, e.g. ``model.estimators_[3].tree_.feature[17] = 40 >= 12 features``.
    """
    walk = _Walk(where)
    walk.visit(estimator, "model", width, 0, None)
    return walk.trees


class _Walk:
    """One walk over a model's object graph; remembers the narrowest width each object was
    checked with, so an object shared by two paths is checked against the narrower one."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.checked: dict[int, int] = {}
        self.trees = 0

    def refuse(self, path: str, problem: str) -> UnsafeArtifactError:
        return UnsafeArtifactError(f"{self.where}: {path}{problem}")

    def visit(
        self, obj: Any, path: str, width: int, depth: int, categorical: np.ndarray | None
    ) -> None:
        if obj is None or isinstance(obj, _SCALARS) or _is_code(obj):
            return
        if depth > MAX_DEPTH:
            raise self.refuse(path, f": nested deeper than {MAX_DEPTH} levels")
        seen = self.checked.get(id(obj))
        if seen is not None and seen <= width:
            return
        self.checked[id(obj)] = width
        if len(self.checked) > MAX_OBJECTS:
            raise self.refuse(path, f": the model holds more than {MAX_OBJECTS} objects")
        kind = type(obj)
        if kind.__name__ == "Tree" and kind.__module__ == "sklearn.tree._tree":
            self.trees += 1
            _check_tree(self, obj, path, width)
            return
        if kind.__name__ == "TreePredictor":
            self.trees += 1
            _check_predictor(self, obj, path, width, categorical)
            return
        if isinstance(obj, np.ndarray):
            if obj.dtype == object:
                for index in np.ndindex(obj.shape):
                    label = ", ".join(str(i) for i in index)
                    self.visit(obj[index], f"{path}[{label}]", width, depth + 1, None)
            return
        if isinstance(obj, list | tuple):
            for i, item in enumerate(obj):
                self.visit(item, f"{path}[{i}]", width, depth + 1, categorical)
            return
        if isinstance(obj, set | frozenset):
            for item in obj:
                self.visit(item, f"{path}{{...}}", width, depth + 1, None)
            return
        if isinstance(obj, dict):
            for key, value in obj.items():
                self.visit(key, f"{path}.keys()", width, depth + 1, None)
                self.visit(value, f"{path}[{key!r}]", width, depth + 1, None)
            return
        if isinstance(obj, functools.partial):
            self.visit([obj.func, obj.args, obj.keywords], f"{path}.partial", width, depth, None)
            return
        self.visit_object(obj, path, width, depth)

    def visit_object(self, obj: Any, path: str, width: int, depth: int) -> None:
        attributes = _state(obj)
        if attributes is None:
            return
        declared = attributes.get("n_features_in_")
        if declared is not None:
            width = _narrowed(self, declared, f"{path}.n_features_in_", width)
        elif "tree_" in attributes or "_predictors" in attributes:
            raise self.refuse(path, " holds trees but declares no n_features_in_")
        categorical = None
        if "_predictors" in attributes:
            categorical = _check_hist_gradient_boosting(self, attributes, path, width)
        subsets = attributes.get("estimators_features_")
        for name, value in attributes.items():
            at, child_width = f"{path}.{name}", width
            if name == "final_estimator_":
                child_width = _stacked_width(attributes, width)
            if name == "estimators_" and subsets is not None:
                self._visit_bagged(value, subsets, at, width, depth)
                continue
            self.visit(
                value, at, child_width, depth + 1, categorical if name == "_predictors" else None
            )

    def _visit_bagged(
        self, estimators: Any, subsets: Any, path: str, width: int, depth: int
    ) -> None:
        """A bagging ensemble (or isolation forest) feeds estimator ``i`` the columns
        ``estimators_features_[i]``, some without an input check: that is its width."""
        if not isinstance(estimators, list | tuple) or not isinstance(subsets, list | tuple):
            raise self.refuse(path, ": estimators_ and estimators_features_ must be lists")
        if len(estimators) != len(subsets):
            msg = f" has {len(estimators)} estimators but {len(subsets)} feature subsets"
            raise self.refuse(path, msg)
        for i, (estimator, columns) in enumerate(zip(estimators, subsets, strict=True)):
            at = f"{path.removesuffix('estimators_')}estimators_features_[{i}]"
            index = np.asarray(columns)
            if index.ndim != 1 or index.dtype.kind not in "iu":
                raise self.refuse(at, f" is not a list of column indices ({index.dtype})")
            bad = np.flatnonzero((index < 0) | (index >= width))
            if bad.size:
                j = int(bad[0])
                raise self.refuse(at, f"[{j}] = {int(index[j])} >= {width} features")
            self.visit(estimator, f"{path}[{i}]", min(width, len(index)), depth + 1, None)


def _is_code(obj: Any) -> bool:
    """Functions, methods and classes carry no tree (skops restores numpy ufuncs and types)."""
    return isinstance(obj, type) or type(obj).__name__ in {
        "function",
        "builtin_function_or_method",
        "ufunc",
        "method",
    }


def _state(obj: Any) -> dict[str, Any] | None:
    """An object's attributes: its ``__dict__``, else what its ``__getstate__`` gives back
    (a compiled type restored from a state may hold a tree inside it)."""
    attributes = getattr(obj, "__dict__", None)
    if isinstance(attributes, dict):
        return attributes
    getstate = getattr(obj, "__getstate__", None)
    if getstate is None:
        return None
    try:
        state = getstate()
    except TypeError:  # a compiled type without a picklable state holds no Python objects
        return None
    if isinstance(state, dict):
        return state
    if isinstance(state, tuple):  # (dict, slots) of a class with __slots__
        return {f"state[{i}]": part for i, part in enumerate(state)}
    return None if state is None else {"state": state}


def _narrowed(walk: _Walk, declared: Any, path: str, width: int) -> int:
    if isinstance(declared, bool) or not isinstance(declared, numbers.Integral):
        raise walk.refuse(path, f" = {declared!r} is not an integer")
    if int(declared) < 1:
        raise walk.refuse(path, f" = {int(declared)}: a fitted model reads at least 1 feature")
    return min(width, int(declared))


def _stacked_width(attributes: dict[str, Any], width: int) -> int:
    """At most how many columns a stacking ensemble's final estimator reads: each base
    estimator's predictions (one column per class at most) and, with passthrough, the input."""
    estimators = attributes.get("estimators_")
    count = len(estimators) if isinstance(estimators, list | tuple) else 0
    classes = attributes.get("classes_")
    per_estimator = 1
    if isinstance(classes, np.ndarray) and classes.dtype != object:
        per_estimator = max(1, len(classes))
    elif isinstance(classes, list | tuple):
        per_estimator = max(1, sum(len(np.atleast_1d(c)) for c in classes))
    passthrough = width if attributes.get("passthrough") is True else 0
    return max(1, count * per_estimator + passthrough)


def _first(bad: np.ndarray) -> int:
    return int(np.flatnonzero(bad)[0])


def _check_links(
    walk: _Walk,
    path: str,
    fields: tuple[tuple[str, np.ndarray], ...],
    internal: np.ndarray,
    features: tuple[str, np.ndarray],
    width: int,
) -> None:
    """Every internal node's children lie after it and inside the array (trees are stored in
    pre-order, so a walk always ends) and its feature is a column of the input."""
    count = len(internal)
    index = np.arange(count)
    for name, child in fields:
        bad = internal & ((child <= index) | (child >= count))
        if bad.any():
            node = _first(bad)
            msg = f".{name}[{node}] = {int(child[node])}: not in ({node}, {count})"
            raise walk.refuse(path, msg + "; a walk from it could leave the node array")
    name, feature = features
    bad = internal & ((feature < 0) | (feature >= width))
    if bad.any():
        node = _first(bad)
        raise walk.refuse(path, f".{name}[{node}] = {int(feature[node])} >= {width} features")


def _check_tree(walk: _Walk, tree: Any, path: str, width: int) -> None:
    # node_count sizes the arrays the properties below return; it must fit the allocation
    # (capacity) before any of them is read, or reading them is the out-of-bounds read.
    count, capacity = int(tree.node_count), int(tree.capacity)
    if not 0 < count <= capacity:
        raise walk.refuse(path, f".node_count = {count}: the tree holds {capacity} nodes")
    if int(tree.n_features) > width:
        raise walk.refuse(path, f".n_features = {int(tree.n_features)} > {width} features")
    left = np.asarray(tree.children_left, dtype=np.int64)
    right = np.asarray(tree.children_right, dtype=np.int64)
    internal = left != -1  # the Cython walk stops where children_left is TREE_LEAF (-1)
    links = (("children_left", left), ("children_right", right))
    feature = np.asarray(tree.feature, dtype=np.int64)
    _check_links(walk, path, links, internal, ("feature", feature), width)
    value = tree.value
    expected = (count, int(tree.n_outputs), int(tree.max_n_classes))
    if tuple(value.shape) != expected:
        raise walk.refuse(path, f".value has shape {value.shape}, expected {expected}")


def _check_predictor(
    walk: _Walk, predictor: Any, path: str, width: int, categorical: np.ndarray | None
) -> None:
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE

    nodes = getattr(predictor, "nodes", None)
    if not isinstance(nodes, np.ndarray) or nodes.dtype != PREDICTOR_RECORD_DTYPE:
        found = getattr(nodes, "dtype", type(nodes).__name__)
        raise walk.refuse(path, f".nodes has dtype {found}, expected {PREDICTOR_RECORD_DTYPE}")
    if nodes.ndim != 1 or len(nodes) == 0:
        raise walk.refuse(path, f".nodes has shape {nodes.shape}: not a list of nodes")
    internal = ~nodes["is_leaf"].astype(bool)
    links = (
        ("nodes.left", nodes["left"].astype(np.int64)),
        ("nodes.right", nodes["right"].astype(np.int64)),
    )
    feature = nodes["feature_idx"].astype(np.int64)
    _check_links(walk, path, links, internal, ("nodes.feature_idx", feature), width)
    rows = []
    for name in ("raw_left_cat_bitsets", "binned_left_cat_bitsets"):
        bitsets = getattr(predictor, name, None)
        if (
            not isinstance(bitsets, np.ndarray)
            or bitsets.dtype != np.uint32
            or bitsets.ndim != 2
            or bitsets.shape[1] != _BITSET_WORDS
        ):
            shape = getattr(bitsets, "shape", type(bitsets).__name__)
            dtype = getattr(bitsets, "dtype", "")
            msg = f".{name} is {dtype} {shape}, expected uint32 (n, {_BITSET_WORDS})"
            raise walk.refuse(path, msg)
        rows.append(len(bitsets))
    split = internal & nodes["is_categorical"].astype(bool)
    if not split.any():
        return
    bitset = nodes["bitset_idx"].astype(np.int64)
    bad = split & (bitset >= min(rows))
    if bad.any():
        node = _first(bad)
        msg = f".nodes.bitset_idx[{node}] = {int(bitset[node])} >= {min(rows)} bitsets"
        raise walk.refuse(path, msg)
    if categorical is None:
        node = _first(split)
        msg = f".nodes[{node}] is a categorical split outside a HistGradientBoosting model"
        raise walk.refuse(path, msg)
    bad = split & ~categorical[feature]
    if bad.any():
        node = _first(bad)
        msg = (
            f".nodes[{node}] splits on feature {int(feature[node])} as categorical; the bin "
            "mapper has no known-category bitset for it"
        )
        raise walk.refuse(path, msg)


def _check_hist_gradient_boosting(
    walk: _Walk, attributes: dict[str, Any], path: str, width: int
) -> np.ndarray:
    """The bin mapper's arrays that ``_raw_predict`` turns into the known-category bitsets
    and their row map; returns which of the ``width`` features are categorical."""
    if attributes.get("_in_fit"):
        # predict would take the binned path, reading the input as bin indices
        raise walk.refuse(path, "._in_fit is set: a fitted model is never mid-fit")
    mapper = attributes.get("_bin_mapper")
    mapper_state = _state(mapper) if mapper is not None else None
    if mapper_state is None:
        raise walk.refuse(path, "._bin_mapper is missing")
    at = f"{path}._bin_mapper"
    categorical = mapper_state.get("is_categorical_")
    if not isinstance(categorical, np.ndarray) or categorical.ndim != 1:
        raise walk.refuse(at, f".is_categorical_ is {type(categorical).__name__}, not a 1-D array")
    if len(categorical) < width:  # f_idx_map, sized by it, is indexed by a node's feature
        msg = f".is_categorical_ has {len(categorical)} entries, fewer than the {width} features"
        raise walk.refuse(at, msg)
    thresholds = mapper_state.get("bin_thresholds_")
    if not isinstance(thresholds, list | tuple) or len(thresholds) != len(categorical):
        found = len(thresholds) if isinstance(thresholds, list | tuple) else type(thresholds)
        msg = f".bin_thresholds_ is {found}, expected a list of {len(categorical)} arrays"
        raise walk.refuse(at, msg)
    mask = categorical.astype(bool)
    for f, values in enumerate(thresholds):
        array = np.asarray(values)
        if array.ndim != 1 or array.dtype.kind not in "iuf":
            raise walk.refuse(at, f".bin_thresholds_[{f}] is not a 1-D numeric array")
        if mask[f]:
            bad = np.flatnonzero((array < 0) | (array > 255) | (array != np.floor(array)))
            if bad.size:
                i = int(bad[0])
                raise walk.refuse(
                    at, f".bin_thresholds_[{f}][{i}] = {array[i]!r}: not a category in [0, 255]"
                )
    missing = mapper_state.get("missing_values_bin_idx_")
    if not isinstance(missing, numbers.Integral) or not 0 <= int(missing) <= 255:
        raise walk.refuse(at, f".missing_values_bin_idx_ = {missing!r}: not in [0, 255]")
    return mask
