"""Crafted scikit-learn artifacts that hide a malformed tree where the first bounds check did
not look, each a real skops file in a real registry, refused by every load path before any
predict: the registry's load, ``load_model``, the batch scorer's per-worker cache (what a
Spark task runs) and the streaming worker's model source.

The signature has 4 inputs; scikit-learn's Cython tree code reads ``X[row, feature]`` and
``nodes[child]`` unchecked, so each tampered index below would read outside an array.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    IsolationForest,
    RandomForestClassifier,
    RandomTreesEmbedding,
    StackingClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from lakecast.errors import UnsafeArtifactError
from lakecast.models import load_model
from lakecast.registry import Registry, Signature
from lakecast.scoring.cache import ModelPayload, predictor_for
from lakecast.serving.model_source import ModelSource

SIG = Signature.of(["a", "b", "c", "d"])
LOAD_PATHS = ("registry", "load_model", "batch", "stream")


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 4))
    x[:, 0] = rng.integers(0, 6, size=300)  # a categorical column for HistGradientBoosting
    y = ((x[:, 1] > 0) ^ (x[:, 0] > 2)).astype(int)
    return x, y


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return Registry(tmp_path_factory.mktemp("crafted") / "registry")


_names = iter(range(1_000))


def _register(registry: Registry, model: Any, tmp_path: Path) -> str:
    """Register ``model``'s skops file unvalidated, as a writer bypassing the checks would."""
    path = tmp_path / "model.skops"
    skops.io.dump(model, path)
    return _register_file(registry, path)


def _register_file(registry: Registry, path: Path) -> str:
    name = f"crafted{next(_names)}"
    record = registry.register(name, artifact=path, signature=SIG, validate=False, flavor="sklearn")
    return record.ref


def _attempts(registry: Registry, ref: str) -> dict[str, Callable[[], Any]]:
    """Every way lakecast turns a registered version into something that predicts."""
    record = registry.resolve(ref)

    def stream() -> Any:
        source = ModelSource(registry, ref, poll_s=60)
        model = source.start()
        source.stop()
        return model.predictor

    return {
        "registry": lambda: registry.load(ref)[1],
        "load_model": lambda: load_model(record),
        "batch": lambda: predictor_for(ModelPayload.from_version(record)),
        "stream": stream,
    }


def _assert_refused_everywhere(registry: Registry, ref: str, message: str) -> None:
    refusals = {}
    for path, attempt in _attempts(registry, ref).items():
        with pytest.raises(UnsafeArtifactError) as refused:
            attempt()
        refusals[path] = str(refused.value)
    assert list(refusals) == list(LOAD_PATHS)
    for path, text in refusals.items():
        assert f"model {ref.split(':')[0]!r} version 1.0.0" in text, (path, text)
        assert message in text, (path, text)


def _corrupt_tree(estimator: Any, field: str = "feature", value: int = 40) -> None:
    """Set ``field`` of the root node of a fitted tree estimator (``feature``, ``left_child``)."""
    tree = estimator.tree_
    state = tree.__getstate__()
    state["nodes"][field][0] = value
    tree.__setstate__(state)


def _forest(data: tuple[np.ndarray, np.ndarray], trees: int = 3) -> RandomForestClassifier:
    x, y = data
    return RandomForestClassifier(n_estimators=trees, max_depth=3, random_state=0).fit(x, y)


# ---- the untampered families load and score as scikit-learn does -----------------------


def _families(data: tuple[np.ndarray, np.ndarray]) -> Iterator[tuple[str, Any]]:
    x, y = data
    yield "forest as a tuple", _with_tuple_estimators(_forest(data))
    yield (
        "stacking",
        StackingClassifier(
            [("rf", _forest(data, 2)), ("lr", LogisticRegression())],
            final_estimator=RandomForestClassifier(n_estimators=2, max_depth=2, random_state=0),
        ).fit(x, y),
    )
    yield "column transformer", _embedding_pipeline(data)
    yield (
        "gradient boosting",
        GradientBoostingClassifier(n_estimators=3, max_depth=2, init=_forest(data, 2)).fit(x, y),
    )
    yield "hist gradient boosting, categorical", _categorical_hgb(data)


def _with_tuple_estimators(forest: RandomForestClassifier) -> RandomForestClassifier:
    forest.estimators_ = tuple(forest.estimators_)  # type: ignore[assignment]
    return forest


def _embedding_pipeline(data: tuple[np.ndarray, np.ndarray]) -> Any:
    x, y = data
    embed = RandomTreesEmbedding(n_estimators=2, max_depth=2, random_state=0)
    columns = ColumnTransformer([("embed", embed, [0, 2])], remainder="passthrough")
    return make_pipeline(columns, LogisticRegression()).fit(x, y)


def test_untampered_models_load_on_every_path_and_score_as_sklearn(
    registry: Registry, data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, _ = data
    for family, model in _families(data):
        ref = _register(registry, model, tmp_path)
        expected = model.predict_proba(x)[:, 1]
        for path, attempt in _attempts(registry, ref).items():
            scores = attempt().predict(x)
            np.testing.assert_allclose(scores, expected, err_msg=f"{family} via {path}")


# ---- one crafted artifact per way around the first check ----------------------------------


def test_a_tuple_hiding_a_bad_tree_is_refused(
    registry: Registry, data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    forest = _with_tuple_estimators(_forest(data))
    _corrupt_tree(forest.estimators_[1])
    ref = _register(registry, forest, tmp_path)
    _assert_refused_everywhere(
        registry, ref, "model.estimators_[1].tree_.feature[0] = 40 >= 4 features"
    )


def test_a_stacking_final_estimator_with_a_bad_tree_is_refused(
    registry: Registry, data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, y = data
    stack = StackingClassifier(
        [("rf", _forest(data, 2)), ("lr", LogisticRegression())],
        final_estimator=RandomForestClassifier(n_estimators=2, max_depth=2, random_state=0),
    ).fit(x, y)
    # The final forest reads the 2 stacked probabilities: feature 3 is inside the signature's
    # 4 columns but outside the array that forest is given.
    _corrupt_tree(stack.final_estimator_.estimators_[0], value=3)
    ref = _register(registry, stack, tmp_path)
    _assert_refused_everywhere(
        registry, ref, "model.final_estimator_.estimators_[0].tree_.feature[0] = 3 >= 2 features"
    )


def test_a_stacking_final_estimator_claiming_more_than_the_stack_is_refused(
    registry: Registry, data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, y = data
    stack = StackingClassifier(
        [("rf", _forest(data, 2))],
        final_estimator=RandomForestClassifier(n_estimators=2, max_depth=2, random_state=0),
    ).fit(x, y)
    # One binary base classifier gives the final forest 1 column (2 at most by the bound);
    # claiming 3 does not let a tree read column 2.
    stack.final_estimator_.n_features_in_ = 3
    _corrupt_tree(stack.final_estimator_.estimators_[1], value=2)
    ref = _register(registry, stack, tmp_path)
    _assert_refused_everywhere(
        registry, ref, "model.final_estimator_.estimators_[1].tree_.feature[0] = 2 >= 1 features"
    )


def test_a_column_transformer_tree_reading_past_its_columns_is_refused(
    registry: Registry, data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    pipeline = _embedding_pipeline(data)
    embed = pipeline.steps[0][1].transformers_[0][1]
    _corrupt_tree(embed.estimators_[1], value=3)  # it is given 2 of the 4 columns
    ref = _register(registry, pipeline, tmp_path)
    _assert_refused_everywhere(
        registry,
        ref,
        "model.steps[0][1].transformers_[0][1].estimators_[1].tree_.feature[0] = 3 >= 2 features",
    )


def test_a_sub_estimator_claiming_a_wider_input_is_refused(
    registry: Registry, data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    forest = _forest(data)
    # The first check took this claim as the limit: feature 20 < 40 passed.
    forest.estimators_[2].n_features_in_ = 40
    _corrupt_tree(forest.estimators_[2], value=20)
    ref = _register(registry, forest, tmp_path)
    _assert_refused_everywhere(
        registry, ref, "model.estimators_[2].tree_.feature[0] = 20 >= 4 features"
    )


def test_a_model_wider_than_its_signature_is_refused(
    registry: Registry, data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, y = data
    noise = np.random.default_rng(1).normal(size=x.shape)
    model = HistGradientBoostingClassifier(max_iter=3).fit(np.hstack([noise, x]), y)
    ref = _register(registry, model, tmp_path)
    _assert_refused_everywhere(registry, ref, ">= 4 features")


def test_an_estimator_owning_trees_must_declare_its_width(
    registry: Registry, data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    forest = _forest(data)
    del forest.estimators_[0].n_features_in_
    ref = _register(registry, forest, tmp_path)
    _assert_refused_everywhere(
        registry, ref, "model.estimators_[0] holds trees but declares no n_features_in_"
    )


def test_a_bad_tree_in_a_dict_of_object_arrays_is_refused(
    registry: Registry, data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    forest = _forest(data)
    spare = copy.deepcopy(forest.estimators_[0])
    _corrupt_tree(spare)
    forest.spare_ = {"ensemble": np.array([forest.estimators_[1], spare], dtype=object)}
    ref = _register(registry, forest, tmp_path)
    _assert_refused_everywhere(
        registry, ref, "model.spare_['ensemble'][1].tree_.feature[0] = 40 >= 4 features"
    )


def test_gradient_boosting_object_array_and_init_forest_are_checked(
    registry: Registry, data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, y = data
    boosted = GradientBoostingClassifier(n_estimators=3, max_depth=2, init=_forest(data, 2))
    boosted.fit(x, y)
    _corrupt_tree(boosted.estimators_[2, 0], "left_child", 0)  # back to the root: no end
    ref = _register(registry, boosted, tmp_path)
    _assert_refused_everywhere(
        registry, ref, "model.estimators_[2, 0].tree_.children_left[0] = 0: not in (0, "
    )
    boosted = GradientBoostingClassifier(n_estimators=3, max_depth=2, init=_forest(data, 2))
    boosted.fit(x, y)
    _corrupt_tree(boosted.init_.estimators_[1])  # predict starts from init_'s probabilities
    ref = _register(registry, boosted, tmp_path)
    # init_ is the init parameter itself, fitted; the walk meets it first as `init`
    _assert_refused_everywhere(
        registry, ref, "model.init.estimators_[1].tree_.feature[0] = 40 >= 4 features"
    )


def test_an_isolation_forest_tree_reading_past_its_feature_subset_is_refused(
    data: tuple[np.ndarray, np.ndarray],
) -> None:
    from lakecast.models.flavors.tree_bounds import check_estimator_trees

    x, _ = data
    forest = IsolationForest(n_estimators=3, max_features=2, random_state=0).fit(x)
    assert check_estimator_trees(forest, "model 'iso'", width=4) == 3
    # Each tree is given only its 2 columns, with no input check.
    _corrupt_tree(forest.estimators_[0], value=3)
    with pytest.raises(UnsafeArtifactError, match=r"estimators_\[0\].tree_.feature\[0\] = 3 >= 2"):
        check_estimator_trees(forest, "model 'iso'", width=4)


def test_a_tree_node_count_past_its_arrays_is_refused(
    data: tuple[np.ndarray, np.ndarray],
) -> None:
    """scikit-learn clamps node_count to the arrays when it restores a tree (so a skops file
    cannot carry a larger one), but the attribute is public: the check reads it before the
    node arrays, whose size it sets."""
    from lakecast.models.flavors.tree_bounds import check_estimator_trees

    forest = _forest(data, 1)
    tree = forest.estimators_[0].tree_
    capacity = tree.capacity
    tree.node_count = capacity + 1000
    with pytest.raises(
        UnsafeArtifactError,
        match=rf"tree_.node_count = {capacity + 1000}: the tree holds {capacity} nodes",
    ):
        check_estimator_trees(forest, "model 'm'", width=4)


# ---- HistGradientBoosting's categorical bitsets and bin mapper ---------------------------


def _categorical_hgb(data: tuple[np.ndarray, np.ndarray]) -> HistGradientBoostingClassifier:
    """A HistGradientBoosting model with categorical splits on column 0.

    scikit-learn puts an ordinal encoder in front (``_preprocessor``), which skops can only
    restore with ``functools.partial`` trusted, which lakecast does not trust. Column 0 holds
    the categories 0..5, which that encoder maps to themselves in the same place, so the
    model without it scores the same: the form a crafted artifact would take anyway.
    """
    x, y = data
    model = HistGradientBoostingClassifier(
        max_iter=4, max_leaf_nodes=6, categorical_features=[0], random_state=0
    ).fit(x, y)
    expected = model.predict_proba(x)
    model._preprocessor = None
    np.testing.assert_allclose(model.predict_proba(x), expected)
    return model


def _categorical_node(model: HistGradientBoostingClassifier) -> tuple[Any, int]:
    for per_iteration in model._predictors:
        for predictor in per_iteration:
            nodes = predictor.nodes
            found = np.flatnonzero((nodes["is_leaf"] == 0) & (nodes["is_categorical"] == 1))
            if found.size:
                return predictor, int(found[0])
    msg = "the fitted model has no categorical split"
    raise AssertionError(msg)


def _numeric_node(model: HistGradientBoostingClassifier) -> tuple[Any, int]:
    predictor = model._predictors[0][0]
    nodes = predictor.nodes
    found = np.flatnonzero((nodes["is_leaf"] == 0) & (nodes["is_categorical"] == 0))
    return predictor, int(found[0])


def _bitset_index_past_the_bitsets(model: Any) -> str:
    predictor, node = _categorical_node(model)
    predictor.nodes["bitset_idx"][node] = 99
    rows = len(predictor.raw_left_cat_bitsets)
    return f".nodes.bitset_idx[{node}] = 99 >= {rows} bitsets"


def _categorical_split_on_a_numeric_feature(model: Any) -> str:
    predictor, node = _numeric_node(model)
    predictor.nodes["is_categorical"][node] = 1
    predictor.nodes["bitset_idx"][node] = 0
    feature = int(predictor.nodes["feature_idx"][node])
    return f"splits on feature {feature} as categorical; the bin mapper has no known-category"


def _narrow_bitset_rows(model: Any) -> str:
    predictor, _ = _categorical_node(model)
    rows = len(predictor.raw_left_cat_bitsets)
    predictor.raw_left_cat_bitsets = np.zeros((rows, 4), dtype=np.uint32)
    return f".raw_left_cat_bitsets is uint32 ({rows}, 4), expected uint32 (n, 8)"


def _short_category_mask(model: Any) -> str:
    model._bin_mapper.is_categorical_ = model._bin_mapper.is_categorical_[:2]
    return "model._bin_mapper.is_categorical_ has 2 entries, fewer than the 4 features"


def _category_past_255(model: Any) -> str:
    model._bin_mapper.bin_thresholds_[0] = np.array([0.0, 1.0, 300.0])
    return "model._bin_mapper.bin_thresholds_[0][2] = np.float64(300.0): not a category"


def _mid_fit(model: Any) -> str:
    model._in_fit = True
    return "model._in_fit is set"


@pytest.mark.parametrize(
    "tamper",
    [
        _bitset_index_past_the_bitsets,
        _categorical_split_on_a_numeric_feature,
        _narrow_bitset_rows,
        _short_category_mask,
        _category_past_255,
        _mid_fit,
    ],
)
def test_a_bad_hist_gradient_boosting_categorical_structure_is_refused(
    registry: Registry,
    data: tuple[np.ndarray, np.ndarray],
    tmp_path: Path,
    tamper: Callable[[Any], str],
) -> None:
    model = _categorical_hgb(data)
    message = tamper(model)
    ref = _register(registry, model, tmp_path)
    _assert_refused_everywhere(registry, ref, message)


def test_a_cycle_and_a_deep_nest_end_the_walk(data: tuple[np.ndarray, np.ndarray]) -> None:
    from lakecast.models.flavors.tree_bounds import MAX_DEPTH, check_estimator_trees

    forest = _forest(data, 2)
    loop: list[Any] = [forest]
    loop.append(loop)
    forest.loop_ = loop
    assert check_estimator_trees(forest, "model 'm'", width=4) == 2
    nest: list[Any] = []
    for _ in range(MAX_DEPTH + 1):
        nest = [nest]
    forest.nest_ = nest
    with pytest.raises(UnsafeArtifactError, match=f"nested deeper than {MAX_DEPTH} levels"):
        check_estimator_trees(forest, "model 'm'", width=4)
