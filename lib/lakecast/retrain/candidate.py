"""Train a candidate of the live version's recipe on the freshest labelled days, register it.

A retrain should learn what the data says *now*: after a concept shift, months of old rows
outvote the few new ones. So the candidate trains on the last ``train_days`` labelled dates of
the ``features`` table (the last ``holdout_days`` of them held out, as ``jobs/train.py``
does), with the recipe of the live version's flavor: scikit-learn's HistGradientBoosting for
``sklearn`` (the demo's champion), the Keras MLP for ``keras``. It is registered with holdout
metrics, lineage (table, Delta version, the dates) and a card, and becomes ``challenger``;
moving ``champion`` is the gates' and the canary's business, never this module's.

Reads the table with deltalake: a retrain of a few days' rows needs no JVM.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lakecast.errors import DataError
from lakecast.features.spec import FEATURE_COLUMNS, LABEL_COLUMN
from lakecast.models.evaluation import evaluate
from lakecast.models.training import (
    GradientBoostingRecipe,
    MlpRecipe,
    time_holdout_split,
    training_rows,
)
from lakecast.models.training_run import (
    CHALLENGER,
    NAN_POLICIES,
    batch_latency_ms,
    model_signature,
    predict_scores,
)
from lakecast.registry import Lineage, ModelCard, ModelVersion, Registry
from lakecast.registry.records import Flavor, current_git_commit


@dataclass(frozen=True)
class CandidateRequest:
    """Which rows, which recipe, which model."""

    features_path: str
    model_name: str
    flavor: Flavor = "sklearn"
    train_days: int | None = 3  # None: every labelled date
    holdout_days: int = 1
    last_day: date | None = None  # the newest date trained on (default: the newest labelled)
    seed: int = 42
    reason: str = "retrain"
    alias: str | None = CHALLENGER  # None: register only (the caller aliases what it chooses)


def fresh_rows(
    table: pa.Table, days: int | None, last_day: date | None
) -> tuple[pa.Table, date, date]:
    """The labelled rows of the last ``days`` dates up to ``last_day`` (every date when
    ``days`` is None).

    Raises:
        DataError: no labelled rows up to ``last_day``.
    """
    labelled = table.filter(pc.is_valid(table[LABEL_COLUMN]))
    if last_day is not None:
        labelled = labelled.filter(pc.less_equal(labelled["date"], pa.scalar(last_day)))
    if labelled.num_rows == 0:
        msg = f"retrain: no labelled rows in the features table up to {last_day or 'now'}"
        raise DataError(msg)
    newest = pc.max(labelled["date"]).as_py()
    if days is None:
        return labelled, pc.min(labelled["date"]).as_py(), newest
    first = newest - timedelta(days=days - 1)
    recent = labelled.filter(pc.greater_equal(labelled["date"], pa.scalar(first)))
    return recent, first, newest


def train_candidate(registry: Registry, request: CandidateRequest) -> ModelVersion:
    """Train, evaluate, register and alias the candidate (see the module docstring).

    Raises:
        DataError: too few labelled dates, or a side of the split lacks a class.
        RegistryError: the registry refused the version.
    """
    from deltalake import DeltaTable

    source = DeltaTable(request.features_path)
    table_version = source.version()
    columns = ["event_id", "ts", "date", *FEATURE_COLUMNS, LABEL_COLUMN]
    rows, first, last = fresh_rows(
        source.to_pyarrow_table(columns=columns), request.train_days, request.last_day
    )
    split = time_holdout_split(
        training_rows(rows, FEATURE_COLUMNS, LABEL_COLUMN).read_as(model_signature()),
        request.holdout_days,
    )
    recipe: Any = (
        GradientBoostingRecipe(seed=request.seed)
        if request.flavor == "sklearn"
        else MlpRecipe(seed=request.seed)
    )
    started = time.perf_counter()
    model = recipe.fit(split.train.features, split.train.labels)
    fit_seconds = time.perf_counter() - started
    metrics = evaluate(split.holdout.labels, predict_scores(model, request.flavor, split.holdout))
    described = split.describe()
    record = registry.register(
        request.model_name,
        model,
        flavor=request.flavor,
        signature=model_signature(),
        metrics={
            **metrics.as_dict(),
            "fit_seconds": fit_seconds,
            "batch_latency_ms": batch_latency_ms(model, request.flavor, split.holdout),
        },
        lineage=Lineage(
            training_table=request.features_path,
            training_table_version=table_version,
            git_commit=current_git_commit(),
            parameters={
                **recipe.params(),
                "holdout_days": request.holdout_days,
                "train_days": request.train_days,
                "first_day": first.isoformat(),
                "last_day": last.isoformat(),
            },
            holdout=described,
        ),
        card=_card(request, metrics.roc_auc, metrics.ece, described, table_version),
        nan_policy=NAN_POLICIES[request.flavor],
        description=f"{request.reason}: {request.flavor} on {first}..{last}",
    )
    if request.alias is not None:
        registry.promote(request.model_name, record.version, request.alias, why=request.reason)
    return record


def _days(request: CandidateRequest) -> str:
    return (
        "every labelled day"
        if request.train_days is None
        else (f"the last {request.train_days} labelled days")
    )


def _card(
    request: CandidateRequest,
    auc: float,
    ece: float,
    split: dict[str, Any],
    table_version: int,
) -> ModelCard:
    return ModelCard(
        model_details=(
            f"{request.flavor} retrain of the live version's recipe (seed {request.seed}) on "
            f"{_days(request)}. Predicts the probability that the user purchases later in the "
            "same session."
        ),
        intended_use="Purchase propensity of the lakecast demo clickstream; a retraining "
        "candidate until the gates and the canary promote it.",
        factors="Device, country, hour, price relative to the category, the user's history.",
        metrics=f"Holdout ROC AUC {auc:.4f}, ECE {ece:.4f} (time holdout, the newest day(s)).",
        evaluation_data=(
            f"{split['holdout_from']} to {split['holdout_to']}: {split['holdout_rows']} rows of "
            f"{request.features_path} v{table_version}."
        ),
        training_data=(
            f"{split['train_from']} to {split['train_to']}: {split['train_rows']} rows of "
            f"{request.features_path} v{table_version}; only recent days, so that a changed "
            "relationship between features and label is learnt, not outvoted."
        ),
        ethical_considerations="Synthetic users only.",
        caveats_and_recommendations=(
            f"Trained on {_days(request)}; retrained because: {request.reason}."
        ),
    )
