"""Feature drift (PSI, KS) and training/serving skew of the served-feature sample.

    ./spark-submit.sh jobs/feature_drift.py [--model NAME@ALIAS] [--from ISO] [--to ISO] \
        [--no-skew] [--no-metrics] [--served-features PATH] [--features PATH] [--registry ROOT]

Per feature, compares the vectors the serving version served in the window (default: the last
24 hours; the archive of the ``served_features`` topic) with the training set its lineage
names: PSI and the KS statistic against ``drift:``'s thresholds, appended to
``monitoring/feature_drift`` and sent to ``metrics`` as ``kind=drift``. Then, unless
``--no-skew``, each sampled event's online features against the ``features`` table's row for
the same event: every feature further apart than ``drift.skew_tolerance`` is appended to
``monitoring/feature_skew`` and named in the summary. Prints a JSON summary; a refused run
(too few samples, no training table in the lineage) exits 1 with one line naming why.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from lakecast.config import settings
from lakecast.lake.tables import FEATURE_DRIFT, FEATURE_SKEW, SERVED_FEATURES_ARCHIVE
from lakecast.monitoring.drift.job import (
    DriftRequest,
    drift_metric_fields,
    run_feature_drift,
    send_drift_metrics,
)
from lakecast.process import run_main
from lakecast.spark import get_spark


def _utc(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def parse_args(argv: list[str]) -> argparse.Namespace:
    cfg = settings()
    lake = cfg.lake
    parser = argparse.ArgumentParser(prog="feature_drift", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=cfg.serving.model, help="NAME@ALIAS or NAME:VERSION")
    parser.add_argument("--from", dest="start", type=_utc, help="window start (ISO, UTC)")
    parser.add_argument("--to", dest="end", type=_utc, help="window end (ISO, UTC; now)")
    parser.add_argument("--no-skew", action="store_true", help="skip the skew comparison")
    parser.add_argument("--no-metrics", action="store_true", help="send no kind=drift records")
    parser.add_argument("--served-features", default=lake.table(SERVED_FEATURES_ARCHIVE))
    parser.add_argument("--features", default=lake.table("features"), help="features table")
    parser.add_argument("--drift-table", default=lake.table(FEATURE_DRIFT))
    parser.add_argument("--skew-table", default=lake.table(FEATURE_SKEW))
    parser.add_argument("--registry", default=cfg.registry_root, help="registry root")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    cfg = settings()
    end = args.end or dt.datetime.now(dt.UTC)
    request = DriftRequest(
        model=args.model,
        registry_root=args.registry,
        served_features=args.served_features,
        drift_table=args.drift_table,
        start=args.start or end - dt.timedelta(days=1),
        end=end,
        features_table=None if args.no_skew else args.features,
        skew_table=None if args.no_skew else args.skew_table,
    )
    spark = get_spark("lakecast-feature-drift")
    outcome = run_feature_drift(spark, request, cfg.drift)
    summary = outcome.summary()
    if not args.no_metrics:
        summary["metrics_sent"] = send_drift_metrics(
            cfg.kafka, cfg.kafka.topics.metrics, drift_metric_fields(outcome, request)
        )
    print(json.dumps(summary, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    run_main(main, prog="feature_drift")
