"""`lakecast run ...`: scheduled batch work, as cron, systemd, Airflow or a CronJob call it.

    lakecast run daily --date 2026-01-07                  # extract, score, archive, report
    lakecast run daily --from 2026-01-01 --to 2026-01-07  # a backfill, in date order
    lakecast run daily --date 2026-01-07 --step score     # one step (an Airflow task)

Exit status 0 when every date's steps are done or were done before, 1 otherwise (a step
failed, or another process runs the date now: the lock in the lake refuses a second run).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

import typer

from lakecast.errors import ScheduleError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

app = typer.Typer(
    help="Scheduled batch work (idempotent per date).",
    no_args_is_help=True,
    add_completion=False,
)


def _day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        msg = f"run daily: {option} {value!r} is not a date (YYYY-MM-DD)"
        raise ScheduleError(msg) from None


def _dates(on: date | None, first: date | None, last: date | None) -> list[date]:
    from lakecast.schedule.daily import dates_between

    if on is not None and (first is not None or last is not None):
        msg = "run daily: give --date, or --from and --to, not both"
        raise ScheduleError(msg)
    if on is not None:
        return [on]
    if first is None or last is None:
        msg = "run daily: give --date YYYY-MM-DD, or --from and --to for a backfill"
        raise ScheduleError(msg)
    return list(dates_between(first, last))


@app.command("daily")
def daily(
    on: str | None = typer.Option(None, "--date", help="The run date, YYYY-MM-DD (UTC)."),
    first: str | None = typer.Option(None, "--from", help="First date of a backfill."),
    last: str | None = typer.Option(None, "--to", help="Last date of a backfill (included)."),
    steps: list[str] = typer.Option(
        [], "--step", help="Only this step (repeatable): extract, score, archive, quality."
    ),
    model: str | None = typer.Option(None, "--model", help="NAME@ALIAS (serving.model)."),
    force: bool = typer.Option(False, "--force", help="Redo steps recorded as done."),
    master: str | None = typer.Option(None, "--master", help="Spark master (spark.master)."),
    lease_minutes: float = typer.Option(
        360.0, "--lease-minutes", help="How long the date's lock outlives a crashed run."
    ),
) -> None:
    """Run a date's batch work (or a range's, in order); each step once, one JSON line each."""
    from lakecast.config import settings
    from lakecast.schedule.daily import DailyPlan, check_steps, run_daily

    days = _dates(_day(on, "--date"), _day(first, "--from"), _day(last, "--to"))
    chosen = check_steps(steps)
    plan = DailyPlan.from_settings(settings(), model=model)
    session: list[SparkSession] = []

    def spark() -> SparkSession:  # started by the first step with work to do, if any
        if not session:
            from lakecast.spark import get_spark

            session.append(get_spark("lakecast-run-daily", master=master))
        return session[0]

    for day in days:
        run_daily(
            plan,
            day,
            spark=spark,
            steps=chosen,
            force=force,
            lease=timedelta(minutes=lease_minutes),
            emit=lambda line: typer.echo(line),
        )
