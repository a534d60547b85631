"""Score the features table with a registered model and MERGE the scores into ``predictions``.

    ./spark-submit.sh jobs/score_batch.py --model NAME@ALIAS [--features-version V] \
        [--incremental] [--batch-size N] [--features PATH] [--predictions PATH] [--registry ROOT] \
        [--ignore-rollout] [--read auto|spark|direct]

``--model`` takes ``NAME@ALIAS``, ``NAME:VERSION`` or ``NAME`` (the latest version). While a
rollout of the model is recorded (``lakecast deploy``), ``NAME`` and ``NAME@champion`` score as
the streaming workers serve: each user's rows by the variant the workers route that user to,
every variant in this one run, each row tagged with its variant and experiment (shadow models'
rows too, with ``served`` false). ``--ignore-rollout``, a pinned ``NAME:VERSION`` or another
alias score with that one version. Re-running never duplicates rows (MERGE on event id, model
name and version). On an executor with a GPU (Spark resource scheduling) a Keras model runs on
it; elsewhere on the CPU, same command. ``--read auto`` (the default) has the Python workers
read the table's Parquet files themselves where that reads exactly what Spark would, and Spark
read them otherwise (an incremental run's change feed, deletion vectors, column mapping, a
non-local path); ``--read spark`` or ``--read direct`` forces one (``direct`` fails where it
cannot be used). The summary's ``read`` and ``read_reason`` say which ran and why.
Prints a JSON summary; a refused run exits 1 with one line naming what was wrong.
"""

from __future__ import annotations

import argparse
import json
import sys

from lakecast.config import settings
from lakecast.errors import LakecastError
from lakecast.process import report_error, run_main
from lakecast.scoring.batch import DEFAULT_BATCH_SIZE
from lakecast.scoring.direct import READ_MODES
from lakecast.scoring.run import ScoringRequest, score_batch
from lakecast.spark import get_spark


def parse_args(argv: list[str]) -> argparse.Namespace:
    cfg = settings()
    parser = argparse.ArgumentParser(prog="score_batch", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="NAME@ALIAS, NAME:VERSION or NAME")
    parser.add_argument("--features-version", type=int, help="features Delta version (latest)")
    parser.add_argument("--incremental", action="store_true", help="only rows changed since")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="rows/predict")
    parser.add_argument("--features", default=cfg.lake.table("features"), help="features table")
    parser.add_argument(
        "--predictions", default=cfg.lake.table("predictions"), help="predictions table"
    )
    parser.add_argument("--registry", default=cfg.registry_root, help="registry root")
    parser.add_argument("--run-id", help="an id for this run (default: a new uuid)")
    parser.add_argument(
        "--ignore-rollout",
        action="store_true",
        help="score with --model's version only, even while a rollout of the model is recorded",
    )
    parser.add_argument(
        "--read",
        choices=READ_MODES,
        default="auto",
        help="how the features are read: by the Python workers from the files (direct), by "
        "Spark (spark), or direct where that is safe (auto, the default)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    spark = get_spark("lakecast-score-batch")
    request = ScoringRequest(
        model=args.model,
        features_path=args.features,
        predictions_path=args.predictions,
        registry_root=args.registry,
        features_table_version=args.features_version,
        incremental=args.incremental,
        batch_size=args.batch_size,
        run_id=args.run_id,
        ignore_rollout=args.ignore_rollout,
        read=args.read,
    )
    try:
        summary = score_batch(spark, request)
    except LakecastError as exc:
        report_error(exc, prog="score_batch")
        return 1
    print(json.dumps(summary.as_dict(), sort_keys=True))
    return 0


if __name__ == "__main__":
    run_main(main, prog="score_batch")
