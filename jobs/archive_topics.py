"""Archive the predictions, metrics and served-features topics into Delta tables (Structured
Streaming).

    ./spark-submit.sh jobs/archive_topics.py --available-now      # archive what is there, stop
    ./spark-submit.sh jobs/archive_topics.py --trigger-seconds 30  # run until stopped

Reads committed records only; the checkpoints make every run append each record exactly once.
Prints a JSON summary of the rows each query added. A topic the broker does not have is skipped
with a warning under ``--available-now`` (nothing to archive yet: ``missing_topics`` in the
summary) and refused otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys

from lakecast.config import settings
from lakecast.lake.archive import (
    ArchiveTarget,
    broker_topics,
    kafka_client_options,
    start_archive,
    topics_on_broker,
)
from lakecast.lake.tables import SERVED_FEATURES_ARCHIVE
from lakecast.process import run_main
from lakecast.spark import get_spark


def parse_args(argv: list[str]) -> argparse.Namespace:
    cfg = settings()
    topics, lake = cfg.kafka.topics, cfg.lake
    parser = argparse.ArgumentParser(prog="archive_topics", description=__doc__.splitlines()[0])
    parser.add_argument("--available-now", action="store_true", help="archive what is there, stop")
    parser.add_argument("--trigger-seconds", type=float, default=10.0, help="continuous trigger")
    parser.add_argument("--bootstrap", default=cfg.kafka.bootstrap_servers, help="Kafka servers")
    parser.add_argument("--predictions-topic", default=topics.predictions)
    parser.add_argument("--metrics-topic", default=topics.metrics)
    parser.add_argument("--served-features-topic", default=topics.served_features)
    parser.add_argument("--predictions-table", default=lake.table("archive/predictions"))
    parser.add_argument("--metrics-table", default=lake.table("archive/metrics"))
    parser.add_argument(
        "--served-features-table",
        help="served-features archive (default: beside the predictions table, "
        f"{SERVED_FEATURES_ARCHIVE.rsplit('/', 1)[-1]})",
    )
    parser.add_argument("--checkpoints", default=lake.table("_checkpoints/archive"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # Beside the predictions archive, so a run given its own lake (--predictions-table ...)
    # keeps all three archives there.
    served_table = args.served_features_table or (
        f"{args.predictions_table.rstrip('/').rsplit('/', 1)[0]}/"
        f"{SERVED_FEATURES_ARCHIVE.rsplit('/', 1)[-1]}"
    )
    configured = [
        ArchiveTarget("predictions", args.predictions_topic, args.predictions_table,
                      f"{args.checkpoints}/predictions"),
        ArchiveTarget("metrics", args.metrics_topic, args.metrics_table,
                      f"{args.checkpoints}/metrics"),
        ArchiveTarget("served_features", args.served_features_topic, served_table,
                      f"{args.checkpoints}/served_features"),
    ]  # fmt: skip
    existing = broker_topics(settings().kafka, args.bootstrap)
    targets, missing = topics_on_broker(configured, existing, available_now=args.available_now)
    for target in missing:
        print(f"archive_topics: warning: no topic {target.topic!r} on {args.bootstrap}: "
              f"{target.kind} not archived (nothing to archive until it exists)",
              file=sys.stderr)  # fmt: skip
    spark = get_spark("lakecast-archive-topics")
    options = kafka_client_options(settings().kafka.security)
    queries = [
        start_archive(
            spark,
            args.bootstrap,
            target,
            available_now=args.available_now,
            trigger_s=args.trigger_seconds,
            kafka_options=options,
        )
        for target in targets
    ]
    if not args.available_now:
        spark.streams.awaitAnyTermination()
    for query in queries:
        query.awaitTermination()
    summary = {
        target.kind: sum(int(p.get("numInputRows", 0)) for p in query.recentProgress)
        for target, query in zip(targets, queries, strict=True)
    }
    missing_topics = {target.kind: target.topic for target in missing}
    print(json.dumps({"archived_rows": summary, "missing_topics": missing_topics}, sort_keys=True))
    return 0


if __name__ == "__main__":
    run_main(main, prog="archive_topics")
