"""The model-quality loop's steps of ``lakecast run daily``: ``quality`` and ``drift``.

``quality`` runs :func:`lakecast.quality.evaluate.evaluate_quality` for the run date once its
outcomes are final (the date has ended, plus ``quality.label_delay_hours``); before that the
step *waits*: nothing is recorded, so the next run of the date does it. ``drift`` runs the
drift and skew job (:mod:`lakecast.monitoring.drift.job`) over the date's window, once per
version of the plan's model that the served-feature sample holds for that day; a version with
fewer than ``drift.min_rows`` samples gets no verdict (said in the summary, not a failure: a
batch-only deployment serves nothing online). Both send their records to the ``metrics``
topic when the plan names a Kafka cluster to publish to.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from lakecast.errors import DataError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from lakecast.schedule.daily import DailyPlan

QUALITY_SOURCE = "run-daily"


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def quality_settles_at(plan: DailyPlan, run_date: date) -> datetime:
    """When ``run_date``'s outcomes are final: its end plus the label delay."""
    return _day_start(run_date) + timedelta(days=1, hours=plan.quality.label_delay_hours)


def quality_waiting(plan: DailyPlan, run_date: date, now: datetime) -> dict[str, Any] | None:
    """Why the quality step cannot run yet (its summary), or None when the day is settled."""
    from lakecast.quality.outcomes import last_settled_day

    delay = timedelta(hours=plan.quality.label_delay_hours)
    if run_date <= last_settled_day(now, delay):
        return None
    return {
        "reason": "the day's outcomes are not final yet",
        "settles_at": quality_settles_at(plan, run_date).isoformat(),
        "label_delay_hours": plan.quality.label_delay_hours,
    }


def run_quality(
    spark: SparkSession, plan: DailyPlan, run_date: date, run_id: str
) -> dict[str, Any]:
    """``model_quality`` rows of ``run_date`` (both prediction paths), published as records."""
    from lakecast.quality.evaluate import QualityRequest, evaluate_quality
    from lakecast.quality.publish import send_metric_records
    from lakecast.quality.records import QUALITY_KIND

    run = evaluate_quality(
        spark,
        QualityRequest(
            events_path=plan.events,
            quality_path=plan.model_quality,
            registry_root=plan.registry,
            predictions_path=plan.predictions,
            archive_path=plan.archive_predictions,
            first_day=run_date,
            last_day=run_date,
            label_delay=timedelta(hours=plan.quality.label_delay_hours),
            bins=plan.quality.bins,
        ),
    )
    published = 0
    if plan.kafka is not None:
        published = send_metric_records(plan.kafka, QUALITY_KIND, QUALITY_SOURCE, run.records)
    groups = [
        {key: record.get(key) for key in ("model", "version", "variant", "count", "auc")}
        for record in run.records
    ]
    return {"table_version": run.table_version, "groups": groups, "published": published}


def served_versions(plan: DailyPlan, run_date: date, name: str) -> dict[str, int]:
    """Versions of model ``name`` in the served-feature archive on ``run_date``: sample counts.

    The archive is partitioned by the date the record reached Kafka, which a late or replayed
    sample does not share with its serving time: the window is on ``ts``, as the drift job's.
    """
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(plan.archive_served_features):
        return {}
    start, end = _day_start(run_date), _day_start(run_date + timedelta(days=1))
    window = (ds.field("model_name") == name) & (ds.field("ts") >= start) & (ds.field("ts") < end)
    table = (
        DeltaTable(plan.archive_served_features)
        .to_pyarrow_dataset()
        .to_table(columns=["model_version"], filter=window)
    )
    counts = pc.value_counts(table.column("model_version")).to_pylist()
    return {
        str(item["values"]): int(item["counts"])
        for item in sorted(counts, key=lambda item: str(item["values"]))
    }


def run_drift(spark: SparkSession, plan: DailyPlan, run_date: date, run_id: str) -> dict[str, Any]:
    """Drift (and skew against the ``features`` table) of each version served on the date."""
    from lakecast.monitoring.drift.job import (
        DriftRequest,
        drift_metric_fields,
        run_feature_drift,
        send_drift_metrics,
    )

    name = plan.model.partition("@")[0].partition(":")[0]
    start, end = _day_start(run_date), _day_start(run_date + timedelta(days=1))
    versions: dict[str, dict[str, Any]] = {}
    published = 0
    for version, samples in served_versions(plan, run_date, name).items():
        if samples < plan.drift.min_rows:
            versions[version] = {
                "rows": samples,
                "verdict": f"none: {samples} samples, drift.min_rows is {plan.drift.min_rows}",
            }
            continue
        request = DriftRequest(
            model=f"{name}:{version}",
            registry_root=plan.registry,
            served_features=plan.archive_served_features,
            drift_table=plan.feature_drift,
            start=start,
            end=end,
            features_table=plan.features,
            skew_table=plan.feature_skew,
        )
        try:
            outcome = run_feature_drift(spark, request, plan.drift)
        except DataError as exc:
            msg = f"drift of {name}:{version} on {run_date}: {exc}"
            raise DataError(msg) from exc
        if plan.kafka is not None:
            published += send_drift_metrics(
                plan.kafka, plan.kafka.topics.metrics, drift_metric_fields(outcome, request)
            )
        summary = outcome.summary()
        skew = summary["skew"]
        versions[version] = {
            "rows": outcome.rows,
            "drifted": summary["drifted"],
            "skew": None
            if skew is None
            else {key: skew[key] for key in ("compared", "unmatched", "differences")},
        }
    return {"model": name, "versions": versions, "published": published}
