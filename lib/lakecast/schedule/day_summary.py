"""The last line of a date's ``lakecast run daily``: the day's quality, drift and age at a glance.

Read from the tables the steps wrote (``monitoring/model_quality``, ``monitoring/feature_drift``),
the registry and the entity-feature snapshot with delta-rs, so a run whose steps were all done
before still says how the day went without starting Spark. Ages are as of the run (what the
monitor would report now), not as of the run date.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from lakecast.errors import LakecastError

if TYPE_CHECKING:
    from lakecast.schedule.daily import DailyPlan, StepOutcome

QUALITY_FIGURES = ("count", "base_rate", "auc", "log_loss", "brier", "ece")


def _rows(path: str, day: date | None = None) -> list[dict[str, Any]]:
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(path):
        return []
    table = DeltaTable(path)
    filters = [("day", "=", day)] if day is not None else None
    return list(table.to_pyarrow_table(filters=filters).to_pylist())


def quality_of_day(plan: DailyPlan, run_date: date) -> list[dict[str, Any]]:
    """The day's ``model_quality`` rows: per model version and variant, the headline figures."""
    rows = _rows(plan.model_quality, run_date)
    return [
        {
            "model": row["model_name"],
            "version": row["model_version"],
            "variant": row["variant"],
            **{name: row[name] for name in QUALITY_FIGURES},
        }
        for row in sorted(rows, key=lambda r: (r["model_name"], r["model_version"], r["variant"]))
    ]


def drift_of_day(plan: DailyPlan, run_date: date) -> dict[str, Any]:
    """Per version, the newest drift run over the day's window: drifted features, largest PSI."""
    start = datetime(run_date.year, run_date.month, run_date.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    runs: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
    for row in _rows(plan.feature_drift):
        if row["window_start"] != start or row["window_end"] != end:
            continue
        key = (row["model_name"], row["model_version"])
        runs.setdefault(key, {}).setdefault(row["run_id"], []).append(row)
    found: dict[str, Any] = {}
    for (name, version), by_run in sorted(runs.items()):
        newest = max(by_run.values(), key=lambda rows: max(r["computed_at"] for r in rows))
        top = max(newest, key=lambda r: r["psi"])
        found[f"{name}:{version}"] = {
            "features": len(newest),
            "drifted": sorted(r["feature"] for r in newest if r["drifted"]),
            "max_psi": {"feature": top["feature"], "psi": top["psi"]},
            "max_ks": max(r["ks"] for r in newest),
        }
    return found


def age_now(plan: DailyPlan, now: datetime) -> dict[str, Any]:
    """The serving model's age (since its training data ended) and the snapshot's, in days."""
    from lakecast.monitoring.staleness import model_age_s, snapshot_age_s
    from lakecast.registry import Registry

    snapshot = snapshot_age_s(plan.entity_features, now)
    age: dict[str, Any] = {
        "as_of": now.isoformat(),
        "snapshot_age_days": None if snapshot is None else round(snapshot / 86_400, 3),
    }
    try:
        record = Registry(plan.registry).resolve(plan.model)
    except LakecastError as exc:
        return {**age, "model": plan.model, "error": str(exc)}
    seconds, measured_from = model_age_s(record, now)
    return {
        **age,
        "model": plan.model,
        "version": record.version,
        "model_age_days": round(seconds / 86_400, 3),
        "age_from": measured_from,
    }


def day_summary(
    plan: DailyPlan,
    run_date: date,
    outcomes: Sequence[StepOutcome],
    now: datetime | None = None,
) -> dict[str, Any]:
    """The summary of ``run_date`` after its run (see the module docstring)."""
    return {
        "job": "daily",
        "run_date": run_date.isoformat(),
        "day_summary": {
            "steps": {outcome.step: outcome.status for outcome in outcomes},
            "quality": quality_of_day(plan, run_date),
            "drift": drift_of_day(plan, run_date),
            "age": age_now(plan, now or datetime.now(UTC)),
        },
    }


def summary_line(summary: dict[str, Any]) -> str:
    return json.dumps(summary, sort_keys=True, default=str)
