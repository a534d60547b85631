"""One training run: read the labelled ``features`` rows, train both demo flavors, register them.

The run reads the features table at one Delta version (the latest unless told), so the lineage
names exactly the rows a model saw. scikit-learn's HistGradientBoosting is registered first and
becomes ``champion``; the Keras MLP is registered next and becomes ``challenger``. Each version
carries its holdout metrics, its lineage (table, Delta version, git commit, lakecast version,
parameters, holdout dates) and a complete model card.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lakecast.errors import DataError, SchemaError
from lakecast.features.invariants import check_feature_table
from lakecast.features.spec import FEATURE_COLUMNS, FEATURES_VERSION, LABEL_COLUMN
from lakecast.models.evaluation import HoldoutMetrics, evaluate
from lakecast.models.predictor import NanPolicy
from lakecast.models.training import (
    GradientBoostingRecipe,
    HoldoutSplit,
    MlpRecipe,
    TrainingRows,
    time_holdout_split,
    training_rows,
)
from lakecast.registry import Lineage, ModelCard, Registry, Signature
from lakecast.registry.records import Flavor, current_git_commit

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession

DEFAULT_MODEL_NAME = "purchase"
CHAMPION, CHALLENGER = "champion", "challenger"
REFUSED = "refused"
# Gradient boosting treats a missing value as a branch of its own, but refuses +-inf; a row
# the MLP cannot read is better unscored than scored as if it were average.
NAN_POLICIES: dict[Flavor, NanPolicy] = {"sklearn": "propagate", "keras": "propagate"}


@dataclass(frozen=True)
class TrainingRequest:
    """What ``jobs/train.py`` asks for."""

    features_path: str
    registry_root: str
    model_name: str = DEFAULT_MODEL_NAME
    features_table_version: int | None = None
    holdout_days: int = 1
    seed: int = 42
    gradient_boosting: GradientBoostingRecipe | None = None
    mlp: MlpRecipe | None = None


@dataclass(frozen=True)
class TrainedVersion:
    """One registered version and how it did on the holdout."""

    flavor: Flavor
    version: str
    alias: str | None
    sha256: str
    metrics: dict[str, float]
    fit_seconds: float
    gates: str = ""  # the champion's gate outcomes (REFUSED: ... when the alias did not move)


@dataclass(frozen=True)
class TrainingSummary:
    """What the run did; the job prints it as JSON."""

    model_name: str
    features_path: str
    features_table_version: int
    split: dict[str, Any]
    versions: list[TrainedVersion] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "features_path": self.features_path,
            "features_table_version": self.features_table_version,
            "split": self.split,
            "versions": [v.__dict__ for v in self.versions],
        }


def model_signature() -> Signature:
    """Both flavors read ``FEATURE_COLUMNS`` as float32 (the table's doubles, rounded once)
    and write ``score``: the Keras graph computes in float32, and trees that split float32
    values have an exact float32 form (``onnx-fp32``, see ``read_as_signature``)."""
    return Signature.of({name: "float32" for name in FEATURE_COLUMNS}, output="score")


def read_training_table(
    spark: SparkSession, path: str, version: int | None
) -> tuple[pa.Table, int]:
    """The labelled rows of the features table at ``version`` (latest when None), as Arrow.

    Raises:
        SchemaError: no Delta table there, or it lacks feature columns or the label.
    """
    from lakecast.features.training_set import training_set
    from lakecast.lake.delta import table_version

    read_version = table_version(spark, path) if version is None else version
    frame = spark.read.format("delta").option("versionAsOf", read_version).load(path)
    missing = [c for c in (*FEATURE_COLUMNS, LABEL_COLUMN) if c not in frame.columns]
    if missing:
        msg = f"train: features table {path!r} v{read_version} lacks columns {missing}"
        raise SchemaError(msg)
    if "features_version" in frame.columns:
        found = {r[0] for r in frame.select("features_version").distinct().collect()}
        if found - {FEATURES_VERSION}:
            msg = (
                f"train: features table {path!r} v{read_version} holds rows of features "
                f"version(s) {sorted(found)}; this code computes {FEATURES_VERSION}"
            )
            raise SchemaError(msg)
    return training_set(frame).toArrow(), read_version


def train_and_register(spark: SparkSession, request: TrainingRequest) -> TrainingSummary:
    """Train both flavors on the features table and register them (see the module docstring).

    Raises:
        SchemaError: the features table is missing or incomplete.
        DataError: too few dates or a single class on a side of the split, or a feature
            value the spec's invariants rule out.
        RegistryError: the registry refused a version.
    """
    table, table_version = read_training_table(
        spark, request.features_path, request.features_table_version
    )
    if table.num_rows == 0:
        msg = f"train: features table {request.features_path!r} v{table_version} has no labels"
        raise DataError(msg)
    # The spec's declared ranges and values: a model must not learn from rows they rule out.
    check_feature_table(table, f"train: features table {request.features_path!r} v{table_version}")
    split = time_holdout_split(
        training_rows(table, FEATURE_COLUMNS, LABEL_COLUMN).read_as(model_signature()),
        request.holdout_days,
    )
    registry = Registry(request.registry_root)
    boosting = request.gradient_boosting or GradientBoostingRecipe(seed=request.seed)
    mlp = request.mlp or MlpRecipe(seed=request.seed)
    summary = TrainingSummary(
        request.model_name, request.features_path, table_version, split.describe()
    )
    recipes: list[tuple[Flavor, str, GradientBoostingRecipe | MlpRecipe]] = [
        ("sklearn", CHAMPION, boosting),
        ("keras", CHALLENGER, mlp),
    ]
    for flavor, alias, recipe in recipes:
        started = time.perf_counter()
        model = recipe.fit(split.train.features, split.train.labels)
        fit_seconds = time.perf_counter() - started
        latency_ms = batch_latency_ms(model, flavor, split.holdout)
        metrics = evaluate(split.holdout.labels, predict_scores(model, flavor, split.holdout))
        lineage = Lineage(
            training_table=request.features_path,
            training_table_version=table_version,
            git_commit=current_git_commit(),
            parameters={**recipe.params(), "holdout_days": request.holdout_days},
            holdout=split.describe(),
        )
        record = registry.register(
            request.model_name,
            model,
            flavor=flavor,
            signature=model_signature(),
            metrics={
                **metrics.as_dict(),
                "fit_seconds": fit_seconds,
                "batch_latency_ms": latency_ms,
            },
            lineage=lineage,
            card=demo_card(flavor, recipe, split, metrics, request, table_version),
            nan_policy=NAN_POLICIES[flavor],
            description=f"demo purchase propensity ({flavor})",
        )
        why = f"trained on {request.features_path} v{table_version}"
        gates = ""
        if alias == CHAMPION:
            gates = promote_champion(registry, request.model_name, record.version, why)
        else:  # the challenger serves nothing until `lakecast deploy` gates and canaries it
            registry.promote(request.model_name, record.version, alias, why=why)
        summary.versions.append(
            TrainedVersion(
                flavor,
                record.version,
                alias if not gates.startswith(REFUSED) else None,
                record.sha256,
                metrics.as_dict(),
                fit_seconds,
                gates,
            )
        )
    return summary


def promote_champion(registry: Registry, name: str, version: str, why: str) -> str:
    """Make ``name:version`` champion through the pre-rollout gates; what the gates said.

    A first champion must reach the config's ``min_holdout`` bar: below it the job fails (the
    version stays registered, nothing serves it). Against a live champion a refusal leaves
    the live one serving and is reported, not raised: a retrain that is not better is a
    normal outcome of a scheduled run.

    Raises:
        RolloutError: a first champion failed the gates.
    """
    from lakecast.errors import ModelNotFoundError, RolloutError
    from lakecast.rollout.promotion import promote_through_gates

    try:
        live = registry.resolve(f"{name}@{CHAMPION}").version
    except ModelNotFoundError:
        live = None
    try:
        done = promote_through_gates(registry, name, version, CHAMPION, reason=why)
    except RolloutError as exc:
        if live is None:
            msg = f"train: no first champion: {exc}"
            raise RolloutError(msg) from exc
        return f"{REFUSED}: {exc}"
    return "; ".join(f"{r.gate} {'pass' if r.passed else 'FAIL'}" for r in done.report.results)


def batch_latency_ms(
    model: Any, flavor: Flavor, rows: TrainingRows, per_rows: int = 1_000
) -> float:
    """Milliseconds to score ``per_rows`` holdout rows in-process, measured after a warm-up.

    The rollout gate compares it between versions, so a slower candidate is caught before it
    takes traffic.
    """
    warm = TrainingRows(rows.features[:256], rows.labels[:256], rows.dates[:256])
    predict_scores(model, flavor, warm)
    started = time.perf_counter()
    predict_scores(model, flavor, rows)
    elapsed = time.perf_counter() - started
    return 1_000 * elapsed * per_rows / max(rows.rows, 1)


def predict_scores(model: Any, flavor: Flavor, rows: Any) -> np.ndarray:
    """The in-process scores of a freshly trained model on ``rows.features``."""
    if flavor == "sklearn":
        return np.asarray(model.predict_proba(rows.features)[:, 1], dtype=np.float64)
    x = np.ascontiguousarray(rows.features, dtype=np.float32)
    # Direct calls, as the registry's Keras predictor makes them (model.predict's dataset
    # pipeline would dominate the batch latency the rollout gate compares).
    slices = [
        np.asarray(model.predict_on_batch(x[i : i + 65_536])) for i in range(0, len(x), 65_536)
    ]
    return np.concatenate(slices).astype(np.float64).reshape(-1)


def demo_card(
    flavor: Flavor,
    recipe: GradientBoostingRecipe | MlpRecipe,
    split: HoldoutSplit,
    metrics: HoldoutMetrics,
    request: TrainingRequest,
    table_version: int,
) -> ModelCard:
    """The model card (Mitchell et al.) of a demo version, with this run's facts in it."""
    kind = (
        "scikit-learn HistGradientBoostingClassifier"
        if flavor == "sklearn"
        else "Keras 3 MLP (Normalization adapted on the training rows, ReLU layers, sigmoid)"
    )
    s = split.describe()
    return ModelCard(
        model_details=(
            f"{kind}, flavor `{flavor}`, trained by lakecast's demo recipe with seed "
            f"{request.seed}. Parameters: {recipe.params()}. Predicts the probability that the "
            "user purchases later in the same session."
        ),
        intended_use=(
            "Ranking and budgeting of on-site offers for the synthetic clickstream of the "
            "lakecast demo; batch scoring of the `features` table and online scoring of the "
            "`events` topic. Not for decisions about real people: the data is synthetic."
        ),
        factors=(
            "Device, country, hour of day, price relative to the category and the user's "
            "history drive the planted signal; metrics are reported over all of them, not per "
            "group. Light users (no history) get less informative scores."
        ),
        metrics=(
            "ROC AUC (ranking), log loss and Brier score (probability quality), expected "
            "calibration error over 10 equal-width bins, all on a time-based holdout. "
            + promotion_rule()
        ),
        evaluation_data=(
            f"The labelled rows of the last {request.holdout_days} date(s) of the features "
            f"table: {s['holdout_from']} to {s['holdout_to']}, {s['holdout_rows']} rows, "
            f"positive rate {metrics.positive_rate:.4f}. Holdout ROC AUC {metrics.roc_auc:.4f}, "
            f"log loss {metrics.log_loss:.4f}, Brier {metrics.brier:.4f}, ECE {metrics.ece:.4f}."
        ),
        training_data=(
            f"`{request.features_path}` at Delta version {table_version} (features version "
            f"{FEATURES_VERSION}): the labelled rows from {s['train_from']} to {s['train_to']}, "
            f"{s['train_rows']} rows; point-in-time features, so no row sees a later event."
        ),
        ethical_considerations=(
            "Synthetic users only. On real data, propensity scores can encode device or "
            "country as a proxy for income; review per-group metrics before use."
        ),
        caveats_and_recommendations=(
            "Trained on a few days of synthetic data; retrain when the features version "
            f"changes (now {FEATURES_VERSION}). Rows with NaN or infinite features score NaN "
            f"(nan_policy `{NAN_POLICIES[flavor]}`) and are counted by the scorer."
        ),
    )


def promotion_rule() -> str:
    """How a version becomes and stays champion, from the configured gates (for the card)."""
    from lakecast.rollout.gates import GateConfig

    gates = GateConfig.configured()
    bar = (
        ""
        if gates.min_holdout is None
        else (f"A first champion must reach {gates.metric} {gates.min_holdout:g} on its holdout. ")
    )
    return (
        f"{bar}A challenger replaces the champion only if its {gates.metric} is at most "
        f"{gates.metric_margin:g} worse (a non-inferiority margin: an equally good retrain "
        "is not held back, a model that ranks visibly worse, say 0.015 of AUC, is refused) "
        "and its batch latency at most "
        f"{gates.latency_margin:.0%} higher (rollout.gates in conf/lakecast.yaml)."
    )
