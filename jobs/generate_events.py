"""Generate the synthetic clickstream into the ``events`` Delta table.

    ./spark-submit.sh jobs/generate_events.py --rows 10000000 --days 7 --seed 42 \
        [--start-date 2026-01-01] [--path lake/events]

The same arguments always give the same rows; rerunning replaces the run's dates (Delta
``replaceWhere``), other dates stay. How rows are made and the planted purchase signal are
documented in :mod:`lakecast.data.clickstream`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time

from lakecast.config import settings
from lakecast.data.calendar import DEFAULT_START_DATE
from lakecast.data.clickstream import ClickstreamRun, generate_events
from lakecast.data.events_table import rows_per_day, write_events
from lakecast.data.world import ConceptShift
from lakecast.process import run_main
from lakecast.spark import get_spark


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="generate_events", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, required=True, help="events to generate")
    parser.add_argument("--days", type=int, required=True, help="consecutive dates to spread over")
    parser.add_argument("--seed", type=int, default=0, help="the seed (default 0)")
    parser.add_argument(
        "--start-date",
        type=dt.date.fromisoformat,
        default=DEFAULT_START_DATE,
        help=f"first date, YYYY-MM-DD (default {DEFAULT_START_DATE}, fixed for determinism)",
    )
    parser.add_argument("--path", help="the table's URI (default: the lake's events table)")
    parser.add_argument(
        "--shift-from-day",
        type=int,
        help="plant a concept shift from this day of the run on (0: its first date): the "
        "device and price terms of the purchase signal reverse (lakecast.data.world.ConceptShift)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    shift = None if args.shift_from_day is None else ConceptShift(args.shift_from_day)
    run = ClickstreamRun(args.rows, args.days, args.seed, args.start_date, shift)
    path = args.path or settings().lake.table("events")
    spark = get_spark("lakecast-generate-events")
    started = time.perf_counter()
    version = write_events(
        generate_events(spark, run.rows, run.days, run.seed, run.start_date, shift), path, run
    )
    elapsed = time.perf_counter() - started
    # One JSON object, as every job's summary: each line a job writes parses as JSON.
    summary = {
        "table": path,
        "version": version,
        "rows": run.rows,
        "days": run.days,
        "start_date": run.start_date.isoformat(),
        "seed": run.seed,
        "dates": [
            {"date": day.isoformat(), "weekday": f"{day:%a}", "rows": count}
            for day, count in rows_per_day(spark, path, run).items()
        ],
        "seconds": round(elapsed, 1),
        "rows_per_s": round(run.rows / elapsed),
    }
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    run_main(main, prog="generate_events")
