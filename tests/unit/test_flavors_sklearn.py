"""scikit-learn through skops: round trips, our trusted list, tree bounds checks, NaN policies."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import skops.io
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from lakecast.errors import DataError, SchemaError, UnsafeArtifactError
from lakecast.models import load_model
from lakecast.models.flavors import sklearn_flavor
from lakecast.registry import Lineage, ModelCard, ModelVersion, Registry, Signature

SIG = Signature.of(["a", "b", "c"])


class SneakyClassifier(LogisticRegression):
    """A type skops does not know and our trusted list does not name."""


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 3))
    return x, (x[:, 0] - x[:, 2] > 0).astype(int)


@pytest.fixture(scope="module")
def hgb(data: tuple[np.ndarray, np.ndarray]) -> HistGradientBoostingClassifier:
    x, y = data
    return HistGradientBoostingClassifier(max_iter=5, max_leaf_nodes=4).fit(x, y)


def _record(path: Path, nan_policy: str = "error") -> ModelVersion:
    """A version record for an artifact file, as the registry would write it."""
    return ModelVersion(
        name="m",
        version="1.0.0",
        flavor="sklearn",
        signature=SIG,
        metrics={},
        lineage=Lineage(),
        card=ModelCard(),
        nan_policy=nan_policy,  # type: ignore[arg-type]
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        artifact_path=str(path),
        created_at=datetime.now(UTC),
        created_by="test",
    )


def _dump(model: object, tmp_path: Path, name: str = "model.skops") -> Path:
    path = tmp_path / name
    skops.io.dump(model, path)
    return path


def test_hist_gradient_boosting_round_trip_scores_predict_proba(
    hgb: HistGradientBoostingClassifier, data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, _ = data
    predictor = load_model(_record(_dump(hgb, tmp_path)))
    scores = predictor.predict(x)
    assert scores.dtype == np.float64
    assert scores.shape == (len(x),)
    np.testing.assert_allclose(scores, hgb.predict_proba(x)[:, 1])


def test_random_forest_round_trip(data: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    x, y = data
    forest = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(x, y)
    predictor = load_model(_record(_dump(forest, tmp_path)))
    np.testing.assert_allclose(predictor.predict(x), forest.predict_proba(x)[:, 1])


def test_arrow_tables_and_dicts_are_read_by_signature_name(
    hgb: HistGradientBoostingClassifier, data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, _ = data
    predictor = load_model(_record(_dump(hgb, tmp_path)))
    shuffled = pa.table({"c": x[:, 2], "extra": np.zeros(len(x)), "a": x[:, 0], "b": x[:, 1]})
    expected = hgb.predict_proba(x)[:, 1]
    np.testing.assert_allclose(predictor.predict(shuffled), expected)
    np.testing.assert_allclose(
        predictor.predict({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2]}), expected
    )
    with pytest.raises(SchemaError, match=r"missing input columns \['b'\]"):
        predictor.predict({"a": x[:, 0], "c": x[:, 2]})
    with pytest.raises(SchemaError, match=r"shape \(200, 2\)"):
        predictor.predict(x[:, :2])


def test_untrusted_type_is_refused_naming_it(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, y = data
    path = _dump(SneakyClassifier().fit(x, y), tmp_path)
    with pytest.raises(UnsafeArtifactError, match=r"not trusted: \[.*SneakyClassifier'\]"):
        load_model(_record(path))


def test_tree_predictor_is_trusted_only_for_a_verified_artifact(
    hgb: HistGradientBoostingClassifier,
) -> None:
    data = skops.io.dumps(hgb)
    with pytest.raises(UnsafeArtifactError, match="TreePredictor"):
        sklearn_flavor.load(data, "model 'm'", sha256_verified=False, width=3)
    assert sklearn_flavor.load(data, "model 'm'", sha256_verified=True, width=3) is not None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("left", 10_000, r"nodes\.left\[\d+\] = 10000: not in"),
        ("right", 4_000_000_000, r"nodes\.right\[\d+\] = 4000000000: not in"),
        ("left", 0, r"nodes\.left\[\d+\] = 0: not in"),  # back at the root: a walk with no end
        ("feature_idx", 7, r"nodes\.feature_idx\[\d+\] = 7 >= 3 features"),
    ],
)
def test_corrupted_tree_node_is_refused_before_predict(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path, field: str, value: int, message: str
) -> None:
    x, y = data
    model = HistGradientBoostingClassifier(max_iter=3, max_leaf_nodes=4).fit(x, y)
    nodes = model._predictors[1][0].nodes
    root = int(np.flatnonzero(nodes["is_leaf"] == 0)[0])
    nodes[field][root] = value
    with pytest.raises(UnsafeArtifactError, match=message) as refused:
        load_model(_record(_dump(model, tmp_path)))
    assert "_predictors[1][0]" in str(refused.value)


def test_corrupted_sklearn_tree_is_refused(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, y = data
    forest = RandomForestClassifier(n_estimators=2, max_depth=3, random_state=0).fit(x, y)
    state = forest.estimators_[1].tree_.__getstate__()
    state["nodes"]["left_child"][0] = 999
    forest.estimators_[1].tree_.__setstate__(state)
    with pytest.raises(
        UnsafeArtifactError,
        match=r"estimators_\[1\]\.tree_\.children_left\[0\] = 999: not in \(0, ",
    ):
        load_model(_record(_dump(forest, tmp_path)))


def test_registry_refuses_to_register_an_unsafe_artifact(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, y = data
    registry = Registry(tmp_path / "registry")
    with pytest.raises(UnsafeArtifactError, match="SneakyClassifier"):
        registry.register("m", SneakyClassifier().fit(x, y), signature=SIG)
    assert registry.versions("m") == []


def test_nan_policies(
    hgb: HistGradientBoostingClassifier, data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, y = data
    bad = x[:6].copy()
    bad[1, 2] = np.nan
    bad[4, 0] = np.inf
    path = _dump(LogisticRegression().fit(x, y), tmp_path)
    reference = skops.io.load(path)

    with pytest.raises(DataError, match=r"2 row\(s\) have NaN or infinite values in \['a', 'c'\]"):
        load_model(_record(path, "error")).predict(bad)

    zeroed = np.where(np.isfinite(bad), bad, 0)
    np.testing.assert_allclose(
        load_model(_record(path, "impute_zero")).predict(bad), reference.predict_proba(zeroed)[:, 1]
    )

    propagated = load_model(_record(path, "propagate")).predict(bad)
    assert np.isnan(propagated[[1, 4]]).all()
    keep = [0, 2, 3, 5]
    np.testing.assert_allclose(propagated[keep], reference.predict_proba(bad[keep])[:, 1])

    native = load_model(_record(_dump(hgb, tmp_path, "hgb.skops"), "native")).predict(
        np.where(np.isinf(bad), np.nan, bad)
    )
    np.testing.assert_allclose(
        native, hgb.predict_proba(np.where(np.isinf(bad), np.nan, bad))[:, 1]
    )


def test_empty_batch_scores_nothing(hgb: HistGradientBoostingClassifier, tmp_path: Path) -> None:
    predictor = load_model(_record(_dump(hgb, tmp_path)))
    assert predictor.predict(np.empty((0, 3))).shape == (0,)


def test_tree_with_a_foreign_node_dtype_is_refused(hgb: HistGradientBoostingClassifier) -> None:
    from sklearn.base import clone

    from lakecast.models.flavors.tree_bounds import check_estimator_trees

    model = clone(hgb).fit(np.eye(3), [0, 1, 0])
    assert check_estimator_trees(model, "model 'm'", width=3) == len(model._predictors)
    predictor = model._predictors[0][0]
    predictor.nodes = np.zeros(len(predictor.nodes), dtype=[("left", "<i8"), ("right", "<i8")])
    with pytest.raises(UnsafeArtifactError, match=r"_predictors\[0\]\[0\]\.nodes has dtype"):
        check_estimator_trees(model, "model 'm'", width=3)


def test_arrow_nulls_follow_the_nan_policy(
    hgb: HistGradientBoostingClassifier, data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    from lakecast.models import Predictor

    x, _ = data
    predictor = load_model(_record(_dump(hgb, tmp_path), "propagate"))
    assert isinstance(predictor, Predictor)
    table = pa.table({"a": pa.array([x[0, 0], None]), "b": x[:2, 1], "c": x[:2, 2]})
    scores = predictor.predict(table)
    assert np.isnan(scores[1])
    np.testing.assert_allclose(scores[0], hgb.predict_proba(x[:1])[0, 1])
