"""Train the demo purchase-propensity models and register them.

    ./spark-submit.sh jobs/train.py [--features lake/features] [--features-version V] \
        [--model purchase] [--holdout-days 1] [--seed 42] [--registry ROOT]

Reads the labelled rows of the ``features`` table (at one Delta version), trains a scikit-learn
HistGradientBoosting model (registered, then ``champion`` through the pre-rollout gates) and a
Keras MLP (registered, then ``challenger``), each with holdout metrics, lineage (with the library
versions) and a model card. A first champion must reach ``rollout.gates.min_holdout`` (else the
job fails, exit 1); a retrain the gates refuse against a live champion leaves that one serving
and says so in the summary. Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import sys

from lakecast.config import settings
from lakecast.models.training_run import DEFAULT_MODEL_NAME, TrainingRequest, train_and_register
from lakecast.process import run_main
from lakecast.spark import get_spark


def parse_args(argv: list[str]) -> argparse.Namespace:
    cfg = settings()
    parser = argparse.ArgumentParser(prog="train", description=__doc__.splitlines()[0])
    parser.add_argument("--features", default=cfg.lake.table("features"), help="features table")
    parser.add_argument("--features-version", type=int, help="Delta version (default: latest)")
    parser.add_argument("--model", default=DEFAULT_MODEL_NAME, help="registered model name")
    parser.add_argument("--holdout-days", type=int, default=1, help="last dates held out")
    parser.add_argument("--seed", type=int, default=42, help="the seed of both recipes")
    parser.add_argument("--registry", default=cfg.registry_root, help="registry root")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    spark = get_spark("lakecast-train")
    summary = train_and_register(
        spark,
        TrainingRequest(
            features_path=args.features,
            registry_root=args.registry,
            model_name=args.model,
            features_table_version=args.features_version,
            holdout_days=args.holdout_days,
            seed=args.seed,
        ),
    )
    print(json.dumps(summary.as_dict(), sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    run_main(main, prog="train")
