"""Join predictions with their realised outcomes and write ``monitoring/model_quality``.

    ./spark-submit.sh jobs/evaluate_quality.py [--date D | --from A --to B] [--no-publish]

Predictions of the batch ``predictions`` table and of the ``predictions`` topic's archive are
joined with the outcomes of their events once the label horizon has passed (the event's UTC
date has ended, plus ``quality.label_delay_hours``). Per model version, variant and day: AUC,
log loss, Brier, ECE with reliability bins, base rate and count, to the Delta table and, as
``kind=quality`` records with the version's holdout figures, to the ``metrics`` topic. With
no date: the last settled day. Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from lakecast.config import settings
from lakecast.lake.tables import MODEL_QUALITY
from lakecast.process import run_main
from lakecast.quality.evaluate import QualityRequest, evaluate_quality
from lakecast.quality.publish import send_metric_records
from lakecast.quality.records import QUALITY_KIND
from lakecast.spark import get_spark


def parse_args(argv: list[str]) -> argparse.Namespace:
    cfg = settings()
    day = dt.date.fromisoformat
    parser = argparse.ArgumentParser(prog="evaluate_quality", description=__doc__.splitlines()[0])
    parser.add_argument("--date", type=day, help="evaluate this day (YYYY-MM-DD)")
    parser.add_argument("--from", dest="first", type=day, help="first day of a range")
    parser.add_argument("--to", dest="last", type=day, help="last day of a range")
    parser.add_argument("--events", default=cfg.lake.table("events"))
    parser.add_argument("--predictions", default=cfg.lake.table("predictions"))
    parser.add_argument("--archive", default=cfg.lake.table("archive/predictions"))
    parser.add_argument("--quality", default=cfg.lake.table(MODEL_QUALITY))
    parser.add_argument("--registry", default=cfg.registry_root)
    parser.add_argument("--no-publish", action="store_true", help="no records to the topic")
    args = parser.parse_args(argv)
    if args.date is not None and (args.first or args.last):
        parser.error("--date and --from/--to exclude each other")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    cfg = settings()
    spark = get_spark("lakecast-evaluate-quality")
    run = evaluate_quality(
        spark,
        QualityRequest(
            events_path=args.events,
            quality_path=args.quality,
            registry_root=args.registry,
            predictions_path=args.predictions,
            archive_path=args.archive,
            first_day=args.date or args.first,
            last_day=args.date or args.last,
            label_delay=dt.timedelta(hours=cfg.quality.label_delay_hours),
            bins=cfg.quality.bins,
        ),
    )
    sent = 0
    if not args.no_publish:
        sent = send_metric_records(cfg.kafka, QUALITY_KIND, "evaluate-quality", run.records)
    print(json.dumps({**run.as_dict(), "published": sent}, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    run_main(main, prog="evaluate_quality")
