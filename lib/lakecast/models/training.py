"""The demo training recipes: a time-based holdout split, HistGradientBoosting and a Keras MLP.

Both recipes are deterministic by seed: the rows are put in a fixed order (ts, event_id) before
anything random happens, scikit-learn gets a fixed ``random_state``, and Keras gets
``keras.utils.set_random_seed`` plus TensorFlow's op determinism. The Keras model starts with a
``Normalization`` layer adapted on the training rows (their mean and variance), so the
``.keras`` file alone turns raw feature values into scores: no scaler to ship beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakecast.errors import DataError, SchemaError
from lakecast.models.predictor import read_as_signature
from lakecast.registry.signature import Signature


@dataclass(frozen=True)
class TrainingRows:
    """Labelled rows in a fixed order: the (n, k) float64 features, 0/1 labels, their dates."""

    features: np.ndarray
    labels: np.ndarray
    dates: np.ndarray  # datetime64[D]

    @property
    def rows(self) -> int:
        return int(self.labels.shape[0])

    def read_as(self, signature: Signature) -> TrainingRows:
        """These rows as a model of ``signature`` reads them (float32 inputs rounded), so
        it is trained and evaluated on what it will be served."""
        features = read_as_signature(self.features, signature, copy=True)
        return TrainingRows(features, self.labels, self.dates)

    def first_date(self) -> date:
        return _to_date(self.dates.min())

    def last_date(self) -> date:
        return _to_date(self.dates.max())


@dataclass(frozen=True)
class HoldoutSplit:
    """Train on the days before ``holdout_from``, evaluate on it and every later day."""

    train: TrainingRows
    holdout: TrainingRows
    holdout_from: date

    def describe(self) -> dict[str, Any]:
        return {
            "train_from": self.train.first_date().isoformat(),
            "train_to": self.train.last_date().isoformat(),
            "holdout_from": self.holdout.first_date().isoformat(),
            "holdout_to": self.holdout.last_date().isoformat(),
            "train_rows": self.train.rows,
            "holdout_rows": self.holdout.rows,
        }


def _to_date(value: np.datetime64) -> date:
    result: date = value.astype("datetime64[D]").astype(object)
    return result


def training_rows(table: pa.Table, columns: Sequence[str], label: str) -> TrainingRows:
    """Labelled rows of an Arrow table, ordered by (ts, event_id) so a seed means one model.

    Raises:
        SchemaError: a feature, the label, ``ts``, ``event_id`` or ``date`` column is missing.
        DataError: a label is null or not 0/1.
    """
    needed = [*columns, label, "ts", "event_id", "date"]
    missing = [name for name in needed if name not in table.schema.names]
    if missing:
        msg = f"training rows: the training set lacks columns {missing}"
        raise SchemaError(msg)
    ordered = table.take(pc.sort_indices(table, [("ts", "ascending"), ("event_id", "ascending")]))
    labels = ordered.column(label)
    if labels.null_count:
        msg = f"training rows: {labels.null_count} row(s) have a null {label!r}"
        raise DataError(msg)
    y = np.asarray(labels.to_numpy(), dtype=np.int64)
    if y.size and not np.isin(y, (0, 1)).all():
        msg = f"training rows: {label!r} must be 0 or 1, found {sorted(set(y.tolist()))[:5]}"
        raise DataError(msg)
    matrix = (
        np.column_stack(
            [np.asarray(ordered.column(c).to_numpy(), dtype=np.float64) for c in columns]
        )
        if ordered.num_rows
        else np.empty((0, len(columns)))
    )
    dates = np.asarray(ordered.column("date").to_numpy(), dtype="datetime64[D]")
    return TrainingRows(np.ascontiguousarray(matrix), y, dates)


def time_holdout_split(rows: TrainingRows, holdout_days: int) -> HoldoutSplit:
    """Hold out the last ``holdout_days`` dates that have rows; train on the earlier ones.

    Raises:
        DataError: too few dates, or one side lacks a class.
    """
    if holdout_days < 1:
        msg = f"holdout split: holdout_days must be >= 1, got {holdout_days}"
        raise DataError(msg)
    days = np.unique(rows.dates)
    if days.size <= holdout_days:
        msg = (
            f"holdout split: the training set spans {days.size} date(s); holding out "
            f"{holdout_days} leaves nothing to train on"
        )
        raise DataError(msg)
    cutoff = days[-holdout_days]
    is_holdout = rows.dates >= cutoff
    train = _subset(rows, ~is_holdout)
    holdout = _subset(rows, is_holdout)
    for side, part in (("train", train), ("holdout", holdout)):
        if np.unique(part.labels).size != 2:
            msg = f"holdout split: the {side} rows hold a single class; need both 0 and 1"
            raise DataError(msg)
    return HoldoutSplit(train, holdout, _to_date(cutoff))


def _subset(rows: TrainingRows, mask: np.ndarray) -> TrainingRows:
    return TrainingRows(
        np.ascontiguousarray(rows.features[mask]), rows.labels[mask], rows.dates[mask]
    )


@dataclass(frozen=True)
class GradientBoostingRecipe:
    """scikit-learn's HistGradientBoostingClassifier with early stopping on a seeded split."""

    max_iter: int = 200
    learning_rate: float = 0.1
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 40
    l2_regularization: float = 1.0
    seed: int = 42

    def params(self) -> dict[str, Any]:
        return {"algorithm": "HistGradientBoostingClassifier", **asdict(self)}

    def fit(self, features: np.ndarray, labels: np.ndarray) -> Any:
        from sklearn.ensemble import HistGradientBoostingClassifier

        model = HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            early_stopping=True,
            validation_fraction=0.1,
            n_iter_no_change=15,
            random_state=self.seed,
        )
        return model.fit(features, labels)


@dataclass(frozen=True)
class MlpRecipe:
    """A Keras 3 MLP: Normalization (adapted here), ReLU hidden layers, a sigmoid output."""

    hidden: tuple[int, ...] = (64, 32)
    epochs: int = 6
    batch_size: int = 512
    learning_rate: float = 2e-3
    seed: int = 42

    def params(self) -> dict[str, Any]:
        params = asdict(self)
        params["hidden"] = list(self.hidden)
        return {"algorithm": "keras.Sequential MLP", **params}

    def fit(self, features: np.ndarray, labels: np.ndarray) -> Any:
        from lakecast.models.flavors.keras_flavor import import_keras

        keras = import_keras()
        seed_everything(keras, self.seed)
        x = np.ascontiguousarray(features, dtype=np.float32)
        y = np.asarray(labels, dtype=np.float32).reshape(-1, 1)
        normalize = keras.layers.Normalization(
            mean=x.mean(axis=0), variance=constant_safe_variance(x), name="normalize"
        )
        layers = [keras.Input(shape=(x.shape[1],), name="features"), normalize]
        # Every layer and the optimizer named: Keras's own names count the objects made
        # before in the process, and would make the same model's artifact differ.
        layers += [
            keras.layers.Dense(width, activation="relu", name=f"hidden_{i}")
            for i, width in enumerate(self.hidden, start=1)
        ]
        layers.append(keras.layers.Dense(1, activation="sigmoid", name="score"))
        model = keras.Sequential(layers, name="purchase_propensity_mlp")
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=self.learning_rate, name="adam"),
            loss="binary_crossentropy",
        )
        model.fit(x, y, epochs=self.epochs, batch_size=self.batch_size, shuffle=True, verbose=0)
        return model


def constant_safe_variance(x: np.ndarray) -> np.ndarray:
    """Per-column variance, with 1 for columns constant in training.

    ``Normalization.adapt`` would divide such a column by ~1e-7, so a value never seen in
    training (a new country's one-hot) would reach the network as ~1e7 and saturate every
    score; with variance 1 it arrives merely centred.
    """
    variance = x.var(axis=0, dtype=np.float64)
    return np.where(variance > 1e-12, variance, 1.0).astype(np.float32)


def seed_everything(keras: Any, seed: int) -> None:
    """Seed Python, numpy and the backend, and ask TensorFlow for deterministic kernels."""
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
