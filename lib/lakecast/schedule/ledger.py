"""The per-date, per-step record of finished work (the ``steps`` table): what a re-run skips.

A step is recorded once it finished, with its JSON summary; a step that failed leaves no
record, so the next run does it again. Only the holder of a date's lock writes that date's
rows; runs of other dates write the same table at the same time, and the retry loop settles it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from lakecast.registry.store import utc_now
from lakecast.schedule.tables import ScheduleTables

STEPS = "steps"


@dataclass(frozen=True)
class StepRecord:
    """A finished step of a job's run date."""

    job: str
    run_date: date
    step: str
    run_id: str
    finished_at: datetime
    seconds: float
    summary: dict[str, Any]


def finished_steps(tables: ScheduleTables, job: str, run_date: date) -> dict[str, StepRecord]:
    """The recorded steps of ``job`` on ``run_date``, by step name."""
    rows = tables.read(STEPS, {"job": job, "run_date": run_date.isoformat()})
    return {
        row["step"]: StepRecord(
            job=row["job"],
            run_date=date.fromisoformat(row["run_date"]),
            step=row["step"],
            run_id=row["run_id"],
            finished_at=row["finished_at"],
            seconds=float(row["seconds"]),
            summary=json.loads(row["summary"] or "{}"),
        )
        for row in rows
    }


def record_step(
    tables: ScheduleTables,
    job: str,
    run_date: date,
    step: str,
    *,
    run_id: str,
    seconds: float,
    summary: dict[str, Any],
) -> None:
    """Record ``step`` of ``job`` on ``run_date`` as finished (replacing an earlier record)."""
    row = {
        "job": job,
        "run_date": run_date.isoformat(),
        "step": step,
        "run_id": run_id,
        "finished_at": utc_now(),
        "seconds": seconds,
        "summary": json.dumps(summary, sort_keys=True, default=str),
    }

    def attempt() -> None:
        snapshot = tables.ensure(STEPS)
        (
            snapshot.merge(
                tables.row_table(STEPS, row),
                "t.job = s.job AND t.run_date = s.run_date AND t.step = s.step",
                source_alias="s",
                target_alias="t",
            )
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )

    tables.with_retry(attempt, f"record {job} {run_date} step {step!r}")
