"""Train a candidate of the champion's recipe on the latest ``features`` and register it as
``challenger``: the "freshly trained model" of the deploy stage (``deploy/local-deploy.sh``).

    python deploy/train_candidate.py [--model purchase] [--seed 42] [--flavor sklearn|keras]

The champion of ``jobs/train.py`` is scikit-learn's HistGradientBoosting; a retrain of that
recipe on the table as it is now is what a scheduled retraining would roll out (the Keras MLP
that ``jobs/train.py`` makes challenger is refused by the holdout gate on the small demo data).
Reads the table with deltalake (no JVM) and records lineage and holdout metrics as the job does.
"""

from __future__ import annotations

import argparse
import json
import time

import pyarrow.compute as pc
from deltalake import DeltaTable

from lakecast.config import settings
from lakecast.features.spec import FEATURE_COLUMNS, LABEL_COLUMN
from lakecast.models.evaluation import evaluate
from lakecast.models.optimize import KINDS, optimize_version
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
from lakecast.registry import Lineage, ModelCard, Registry


def main() -> None:
    cfg = settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="purchase")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--flavor", choices=("sklearn", "keras"), default="sklearn")
    parser.add_argument("--features", default=cfg.lake.table("features"))
    parser.add_argument(
        "--optimize",
        choices=KINDS,
        help="make the candidate's optimised version (lakecast models optimize) the challenger",
    )
    args = parser.parse_args()

    source = DeltaTable(args.features)
    arrow = source.to_pyarrow_table()
    arrow = arrow.filter(pc.is_valid(arrow[LABEL_COLUMN]))  # labelled rows, as jobs/train.py
    split = time_holdout_split(training_rows(arrow, FEATURE_COLUMNS, LABEL_COLUMN), 1)
    recipe = (
        GradientBoostingRecipe(seed=args.seed)
        if args.flavor == "sklearn"
        else MlpRecipe(seed=args.seed)
    )
    started = time.perf_counter()
    model = recipe.fit(split.train.features, split.train.labels)
    fit_seconds = time.perf_counter() - started
    metrics = evaluate(split.holdout.labels, predict_scores(model, args.flavor, split.holdout))
    registry = Registry(cfg.registry_root)
    record = registry.register(
        args.model,
        model,
        flavor=args.flavor,
        signature=model_signature(),
        metrics={
            **metrics.as_dict(),
            "fit_seconds": fit_seconds,
            "batch_latency_ms": batch_latency_ms(model, args.flavor, split.holdout),
        },
        lineage=Lineage(
            training_table=args.features,
            training_table_version=source.version(),
            parameters={**recipe.params(), "holdout_days": 1},
            holdout=split.describe(),
        ),
        card=ModelCard(
            model_details=f"{args.flavor} retrain of the champion's recipe (seed {args.seed})",
            intended_use="Purchase propensity of the lakecast demo clickstream",
            factors="device, country, category (one-hot features)",
            metrics=f"holdout ROC AUC {metrics.roc_auc:.4f}, ECE {metrics.ece:.4f}",
            evaluation_data=f"the last day of {args.features} v{source.version()}",
            training_data=f"the earlier days of {args.features} v{source.version()}",
            caveats_and_recommendations="Synthetic data; the deploy stage's candidate.",
        ),
        nan_policy=NAN_POLICIES[args.flavor],
        description=f"deploy-stage candidate ({args.flavor})",
    )
    why = "deploy stage candidate"
    if args.optimize:  # the optimised version rolls out like any other
        record = optimize_version(registry, record.ref, args.optimize).record
        why += f" ({args.optimize} of the retrain, parity checked)"
    registry.promote(args.model, record.version, CHALLENGER, why=why)
    print(json.dumps({"candidate": f"{args.model}:{record.version}", **metrics.as_dict()}))


if __name__ == "__main__":
    main()
