"""lakecast's daily batch work as an Apache Airflow DAG: one task per step, in order.

    extract -> score -> archive -> report -> quality -> drift

Each task runs ``lakecast run daily --date {{ ds }} --step STEP`` from the checkout at
``$LAKECAST_HOME`` (default: the checkout this file is in). The run date is the data interval's
start (``ds``): the run for 2026-01-07 starts once that day is over. ``catchup`` backfills
every date since ``start_date`` in order (``max_active_runs=1``), and a step already done for a
date is skipped by lakecast itself, so clearing and re-running a task is safe. A date that
another scheduler is running is refused by the lock in the lake (the task fails and retries).
``quality`` needs the day's outcomes, final ``quality.label_delay_hours`` (1 h by default)
after the day's end; the DAG runs just after midnight, so that task usually exits 75 (waiting)
at first and retries until the outcomes are in: :data:`QUALITY_RETRIES` tries
:data:`QUALITY_RETRY_DELAY` apart cover a delay of up to 3 hours.

Copy (or symlink) this file into the DAGs folder. Tested with Airflow 3.3 (``make airflow-test``).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, chain
from airflow.timetables.interval import CronDataIntervalTimetable

STEPS = ("extract", "score", "archive", "report", "quality", "drift")
QUALITY_RETRIES = 9
QUALITY_RETRY_DELAY = timedelta(minutes=20)
LAKECAST_HOME = os.environ.get("LAKECAST_HOME", str(Path(__file__).resolve().parents[2]))
START = datetime.fromisoformat(os.environ.get("LAKECAST_DAG_START", "2026-01-01T00:00:00+00:00"))

with DAG(
    dag_id="lakecast_daily",
    description="lakecast: extract -> score -> archive -> report -> quality -> drift, per date",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=START,
    catchup=True,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
    tags=["lakecast"],
) as dag:
    tasks = [
        BashOperator(
            task_id=step,
            bash_command=f"exec .venv/bin/lakecast run daily --date {{{{ ds }}}} --step {step}",
            cwd=LAKECAST_HOME,
            append_env=True,
            **(
                {"retries": QUALITY_RETRIES, "retry_delay": QUALITY_RETRY_DELAY}
                if step == "quality"
                else {}
            ),
        )
        for step in STEPS
    ]
    chain(*tasks)
