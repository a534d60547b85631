"""How ``lakecast run daily`` treats the model-quality loop's steps, on the real ledger (delta-rs)
and without Spark: ``quality`` waits for a date's outcomes, unrecorded and exit status 75; a
failed check does not stop the others, a failed batch step stops the date; a ledger written
before the loop's steps (the report recorded as ``quality``) still skips the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from lakecast.errors import ScheduleError
from lakecast.schedule.daily import STEPS, DailyPlan, run_daily
from lakecast.schedule.ledger import finished_steps, record_step
from lakecast.schedule.tables import ScheduleTables

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DAY = date(2026, 1, 5)
BEFORE_SETTLED = datetime(2026, 1, 6, 0, 30, tzinfo=UTC)  # the label delay is 1 h by default


def _plan(root: Path) -> DailyPlan:
    from lakecast.config import load_settings

    return DailyPlan.from_settings(load_settings(environ={"LAKECAST__LAKE__ROOT": str(root)}))


def _no_spark() -> SparkSession:
    msg = "no Spark in this test"
    raise ScheduleError(msg)


def _record(plan: DailyPlan, day: date, *steps: str) -> None:
    tables = ScheduleTables(plan.schedule_root)
    for step in steps:
        record_step(tables, "daily", day, step, run_id="earlier", seconds=1.0, summary={})


def test_a_failed_check_lets_the_others_run_and_a_failed_batch_step_stops(tmp_path: Path) -> None:
    plan = _plan(tmp_path / "lake")
    _record(plan, DAY, "extract", "score", "archive")
    lines: list[str] = []
    with pytest.raises(ScheduleError, match="no Spark in this test"):
        run_daily(plan, DAY, spark=_no_spark, emit=lines.append, now=lambda: BEFORE_SETTLED)
    found = [(line["step"], line["status"]) for line in map(json.loads, lines)]
    assert found == [
        ("extract", "skipped"),
        ("score", "skipped"),
        ("archive", "skipped"),
        ("report", "failed"),
        ("quality", "waiting"),
        ("drift", "failed"),
    ]
    assert set(finished_steps(ScheduleTables(plan.schedule_root), "daily", DAY)) == {
        "extract",
        "score",
        "archive",
    }  # neither the failed checks nor the waiting one are recorded

    later = DAY + timedelta(days=1)
    _record(plan, later, "extract")
    lines.clear()
    with pytest.raises(ScheduleError, match="no Spark in this test"):
        run_daily(plan, later, spark=_no_spark, emit=lines.append)
    found = [(line["step"], line["status"]) for line in map(json.loads, lines)]
    assert found == [("extract", "skipped"), ("score", "failed")]  # the date stops there


def test_a_report_recorded_under_its_old_name_is_skipped(tmp_path: Path) -> None:
    plan = _plan(tmp_path / "lake")
    tables = ScheduleTables(plan.schedule_root)
    summary = {"kind": "predictions_summary", "groups": []}  # what the report step wrote
    record_step(tables, "daily", DAY, "quality", run_id="old", seconds=1.0, summary=summary)
    lines: list[str] = []
    outcomes = run_daily(
        plan,
        DAY,
        spark=_no_spark,
        steps=("report", "quality"),
        emit=lines.append,
        now=lambda: BEFORE_SETTLED,
    )
    assert [(o.step, o.status) for o in outcomes] == [("report", "skipped"), ("quality", "waiting")]
    assert outcomes[0].summary["run_id"] == "old"


def test_the_cli_exits_75_while_quality_waits_and_prints_the_day_summary(tmp_path: Path) -> None:
    plan = _plan(tmp_path / "lake")
    today = datetime.now(UTC).date()  # its outcomes are not final before tomorrow
    _record(plan, today, *(step for step in STEPS if step != "quality"))
    env = {**os.environ, "LAKECAST__LAKE__ROOT": str(tmp_path / "lake")}
    cli = Path(sys.executable).with_name("lakecast")
    done = subprocess.run(
        [str(cli), "run", "daily", "--date", today.isoformat()],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 75, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line.get("step") for line in lines] == [*STEPS, None]
    summary = lines[-1]["day_summary"]
    assert summary["steps"]["quality"] == "waiting"
    assert summary["quality"] == [] and summary["drift"] == {}  # nothing evaluated yet
    assert "error" in summary["age"]  # no model registered in this lake: said, not fatal
