"""`lakecast run ...`: scheduled batch work, as cron, systemd, Airflow or a CronJob call it.

    lakecast run daily --date 2026-01-07                  # every step, then the day's summary
    lakecast run daily --from 2026-01-01 --to 2026-01-07  # a backfill, in date order
    lakecast run daily --date 2026-01-07 --step score     # one step (an Airflow task)

Steps: extract, score, archive, report, quality, drift (:mod:`lakecast.schedule.daily`). After
each date's steps, one more JSON line, ``{"job", "run_date", "day_summary"}``: each step's
status, the day's ``model_quality`` figures per version and variant, the drift verdict per
served version, and the serving model's and the entity snapshot's age.

Exit status:
  0   every step of every date is done, or was done before;
  1   a step failed (a failed batch step stops its date; a backfill stops at the failed date),
      or another process runs the date now (the lock in the lake refuses a second run);
  75  nothing failed, but ``quality`` waits for a date's outcomes (the date ended less than
      ``quality.label_delay_hours`` ago): run the date again later (EX_TEMPFAIL, so a
      scheduler retries; the other steps are recorded and will be skipped).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

import typer

from lakecast.errors import ScheduleError

WAITING_EXIT = 75  # sysexits.h EX_TEMPFAIL: try again later

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
        [],
        "--step",
        help="Only this step (repeatable): extract, score, archive, report, quality, drift.",
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
    from lakecast.schedule.day_summary import day_summary, summary_line

    days = _dates(_day(on, "--date"), _day(first, "--from"), _day(last, "--to"))
    chosen = check_steps(steps)
    plan = DailyPlan.from_settings(settings(), model=model)
    session: list[SparkSession] = []

    def spark() -> SparkSession:  # started by the first step with work to do, if any
        if not session:
            from lakecast.spark import get_spark

            session.append(get_spark("lakecast-run-daily", master=master))
        return session[0]

    waiting = False
    for day in days:
        outcomes = run_daily(
            plan,
            day,
            spark=spark,
            steps=chosen,
            force=force,
            lease=timedelta(minutes=lease_minutes),
            emit=lambda line: typer.echo(line),
        )
        typer.echo(summary_line(day_summary(plan, day, outcomes)))
        waiting = waiting or any(outcome.status == "waiting" for outcome in outcomes)
    if waiting:
        raise typer.Exit(WAITING_EXIT)
