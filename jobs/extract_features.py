"""Extract features for one run date (or every date): events -> features + entity_features.

    spark-submit.sh jobs/extract_features.py --run-date 2024-01-07
    spark-submit.sh jobs/extract_features.py --all --events lake/events --out lake/features

Idempotent per run date: the date's partitions are replaced, so a scheduler may re-run any day.
Prints a JSON summary (rows written, labels, the events and output table versions).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date

from lakecast.config import settings
from lakecast.features.extract import extract_features
from lakecast.process import run_main
from lakecast.spark import get_spark


def parse_args(argv: list[str]) -> argparse.Namespace:
    lake = settings().lake
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--run-date", type=date.fromisoformat, help="YYYY-MM-DD (UTC)")
    when.add_argument("--all", action="store_true", help="rebuild every date of the events table")
    parser.add_argument("--events", default=lake.table("events"), help="events Delta table")
    parser.add_argument("--out", default=lake.table("features"), help="features Delta table")
    parser.add_argument(
        "--entity-features", default=lake.table("entity_features"), help="snapshot Delta table"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    spark = get_spark("lakecast-extract-features")
    summary = extract_features(
        spark,
        events_path=args.events,
        features_path=args.out,
        entity_features_path=args.entity_features,
        run_date=None if args.all else args.run_date,
    )
    print(json.dumps(summary.as_dict(), sort_keys=True))
    return 0


if __name__ == "__main__":
    run_main(main, prog="extract_features")
