"""Registered model versions for tests, made fast: tiny ones for the worker, and ones with a
holdout for optimised versions.

:func:`register_model` trains a small logistic regression on the features of the synthetic
events of :mod:`lakecast.testing.events` (so its scores spread over (0, 1)) and registers it;
:func:`served_lake` adds a snapshot: what a worker needs to serve.

``jobs/train.py`` records in each version's lineage the training table, its Delta version and
the holdout dates, which is what ``lakecast models optimize`` checks parity on. These helpers
make such a version without Spark: synthetic ``features`` rows written with delta-rs, a small
model of either demo flavor trained on the days before the holdout, registered as the job
registers it. And :func:`perturb_first_tensor`, to break a converted graph on purpose.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from lakecast.features.spec import FEATURE_COLUMNS, LABEL_COLUMN
from lakecast.models.evaluation import evaluate
from lakecast.models.predictor import NanPolicy
from lakecast.models.training import (
    GradientBoostingRecipe,
    MlpRecipe,
    time_holdout_split,
    training_rows,
)
from lakecast.models.training_run import model_signature, predict_scores
from lakecast.registry import Lineage, ModelCard, ModelVersion, Registry
from lakecast.registry.records import Flavor
from lakecast.registry.signature import Signature
from lakecast.testing.features import synthetic_features, training_matrix, write_snapshot

SMALL_RECIPES: dict[Flavor, GradientBoostingRecipe | MlpRecipe] = {
    "sklearn": GradientBoostingRecipe(max_iter=30, seed=1),
    "keras": MlpRecipe(hidden=(16, 8), epochs=2, batch_size=256, seed=1),
}


def train_model(seed: int = 0, rows: int = 600) -> Any:
    """A small scikit-learn logistic regression over ``FEATURE_COLUMNS``.

    Trained on the features of synthetic events with noisy labels from a random projection, so
    that its scores on such events spread over (0, 1) instead of saturating.
    """
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    matrix = training_matrix(rows)
    scale = matrix.std(axis=0) + 1e-9
    standard = (matrix - matrix.mean(axis=0)) / scale
    logits = standard @ rng.standard_normal(matrix.shape[1]) * 0.3
    labels = (rng.random(rows) < 1 / (1 + np.exp(-logits))).astype(int)
    labels[:2] = [0, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unscaled inputs: lbfgs stops early, which is fine here
        return LogisticRegression(C=0.1, max_iter=500).fit(matrix, labels)


def slow_twin(model: Any, copies: int) -> Any:
    """A soft-voting ensemble of ``copies`` of a fitted classifier: its scores, ``copies``
    times its predict cost. The candidate that is right but slow, for latency analyses."""
    from sklearn.ensemble import VotingClassifier
    from sklearn.preprocessing import LabelEncoder

    ensemble = VotingClassifier([(f"copy{i}", model) for i in range(copies)], voting="soft")
    # Fitted attributes set directly: every member is the already fitted model.
    ensemble.estimators_ = [model] * copies
    ensemble.le_ = LabelEncoder().fit(model.classes_)
    ensemble.classes_ = ensemble.le_.classes_
    return ensemble


def register_model(
    registry_root: str,
    name: str = "purchase",
    *,
    seed: int = 0,
    alias: str | None = "champion",
    nan_policy: NanPolicy = "error",
) -> ModelVersion:
    """Register a tiny model under ``name`` (and point ``alias`` at it); its version record."""
    registry = Registry(registry_root)
    record = registry.register(
        name,
        train_model(seed),
        signature=Signature.of(list(FEATURE_COLUMNS), dtype="float64"),
        metrics={"auc": 0.5},
        nan_policy=nan_policy,
        description=f"test model, seed {seed}",
    )
    if alias:
        registry.promote(name, record.version, alias, why="test fixture")
    return record


def served_lake(root: Path) -> dict[str, str]:
    """A registry with ``purchase@champion`` and an entity snapshot under ``root``: what a
    worker needs to serve; the paths as ``registry`` and ``snapshot``."""
    paths = {"registry": str(root / "registry"), "snapshot": str(root / "entity_features")}
    register_model(paths["registry"])
    write_snapshot(paths["snapshot"])
    return paths


def write_features_table(
    path: str, rows: int = 3_000, seed: int = 3, days: int = 3, *, online: bool = False
) -> int:
    """Synthetic ``features`` rows over ``days`` dates as a Delta table; its version.

    ``online``: the feature values are those the streaming worker computes for the test events
    of :mod:`lakecast.testing.events` (labels from a random projection of them), so that a
    model trained here scores those events over (0, 1) instead of saturating.
    """
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    table = synthetic_features(rows, seed=seed, days=days)
    if online:
        matrix = training_matrix(rows)
        rng = np.random.default_rng(seed)
        standard = (matrix - matrix.mean(axis=0)) / (matrix.std(axis=0) + 1e-9)
        logits = standard @ rng.standard_normal(matrix.shape[1]) * 0.5
        labels = (rng.random(rows) < 1 / (1 + np.exp(-logits))).astype(np.int32)
        columns = {name: pa.array(matrix[:, i]) for i, name in enumerate(FEATURE_COLUMNS)}
        columns[LABEL_COLUMN] = pa.array(labels)
        for name, values in columns.items():
            index = table.schema.get_field_index(name)
            table = table.set_column(index, table.schema.field(index), values)
    write_deltalake(path, table, partition_by=["date"])
    return int(DeltaTable(path).version())


def register_with_holdout(
    registry: Registry,
    features_path: str,
    flavor: Flavor,
    *,
    name: str = "purchase",
    alias: str | None = None,
) -> ModelVersion:
    """Train ``flavor``'s small recipe on ``features_path`` (last date held out) and register
    it with the lineage and a card as ``jobs/train.py`` would."""
    from deltalake import DeltaTable

    table = DeltaTable(features_path)
    version = int(table.version())
    split = time_holdout_split(
        training_rows(table.to_pyarrow_table(), FEATURE_COLUMNS, LABEL_COLUMN).read_as(
            model_signature()
        ),
        holdout_days=1,
    )
    recipe = SMALL_RECIPES[flavor]
    model = recipe.fit(split.train.features, split.train.labels)
    metrics = evaluate(split.holdout.labels, predict_scores(model, flavor, split.holdout))
    record = registry.register(
        name,
        model,
        flavor=flavor,
        signature=model_signature(),
        metrics=metrics.as_dict(),
        lineage=Lineage(
            training_table=features_path,
            training_table_version=version,
            parameters=recipe.params(),
            holdout=split.describe(),
        ),
        card=ModelCard(model_details=f"test {flavor} model", intended_use="tests"),
        nan_policy="propagate",
        description=f"test {flavor} model",
    )
    if alias is not None:
        registry.promote(name, record.version, alias, why="test fixture")
    return record


def perturb_first_tensor(data: bytes, delta: float = 1e-3) -> bytes:
    """The ONNX graph ``data`` with ``delta`` added to the first value of its first float
    tensor (an initializer, else a node's tensor attribute): a conversion gone subtly wrong."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_model_from_string(data)
    tensors: list[Any] = list(model.graph.initializer)
    tensors += [a.t for node in model.graph.node for a in node.attribute if a.HasField("t")]
    for tensor in tensors:
        values = numpy_helper.to_array(tensor)
        if values.dtype.kind == "f" and values.size:
            changed = values.copy()
            changed.flat[0] += delta
            tensor.CopyFrom(numpy_helper.from_array(changed.astype(values.dtype), tensor.name))
            changed_bytes: bytes = model.SerializeToString()
            return changed_bytes
    msg = "perturb_first_tensor: the graph has no float tensor"
    raise ValueError(msg)


__all__ = [
    "SMALL_RECIPES",
    "perturb_first_tensor",
    "register_model",
    "register_with_holdout",
    "served_lake",
    "slow_twin",
    "train_model",
    "write_features_table",
]
