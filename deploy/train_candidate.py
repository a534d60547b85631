"""Train a candidate of the champion's recipe on the latest ``features`` and register it as
``challenger``: the "freshly trained model" of the deploy stage (``deploy/local-deploy.sh``).

    python deploy/train_candidate.py [--model purchase] [--seed 42] [--flavor sklearn|keras]
        [--optimize KIND]

The champion of ``jobs/train.py`` is scikit-learn's HistGradientBoosting; a retrain of that
recipe on every labelled day of the table as it is now is what a scheduled retraining would
roll out. The training is the retraining loop's own (:mod:`lakecast.retrain.candidate`);
this script only chooses the rows (all of them) and what becomes ``challenger``.
"""

from __future__ import annotations

import argparse
import json

from lakecast.config import settings
from lakecast.models.optimize import KINDS, optimize_version
from lakecast.models.training_run import CHALLENGER
from lakecast.registry import Registry
from lakecast.retrain.candidate import CandidateRequest, train_candidate


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

    registry = Registry(cfg.registry_root)
    why = "deploy stage candidate"
    record = train_candidate(
        registry,
        CandidateRequest(
            features_path=args.features,
            model_name=args.model,
            flavor=args.flavor,
            train_days=None,
            holdout_days=1,
            seed=args.seed,
            reason=why,
            alias=None,
        ),
    )
    if args.optimize:  # the optimised version rolls out like any other
        record = optimize_version(registry, record.ref, args.optimize).record
        why += f" ({args.optimize} of the retrain, parity checked)"
    registry.promote(args.model, record.version, CHALLENGER, why=why)
    print(json.dumps({"candidate": f"{args.model}:{record.version}", **record.metrics}))


if __name__ == "__main__":
    main()
