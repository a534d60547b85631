"""``lakecast run daily``: one date's batch work and the model-quality loop's checks of it.

    extract -> score -> archive -> report -> quality -> drift

Every step is idempotent on its own (extract replaces the date's partitions, scoring MERGEs the
rows changed since the model's last run, the archive's checkpoints append each topic record
once, the report and ``model_quality`` replace their date, drift appends one run) and is
recorded in the lake when it finished, so a re-run of a date skips what is done and redoes
what failed. The date's lock (:mod:`.lock`) is taken before Spark starts and refuses a second
concurrent run of that date, on any machine. Each step prints one JSON line: ``{"job",
"run_date", "step", "status", "seconds", "summary"}`` with status ``done``, ``skipped``,
``waiting`` (``quality`` before the day's outcomes are final: not recorded, so the next run of
the date does it) or ``failed``.

A failed *batch* step (extract, score, archive) stops the date: the steps after it read what
it writes. The *checks* (report, quality, drift) read only what the batch steps wrote, so one
that fails does not keep the others from running; the run raises the first failure after them.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from lakecast.config import DriftSettings, KafkaSettings, QualitySettings, settings
from lakecast.errors import ScheduleError
from lakecast.process import describe_error, one_line
from lakecast.schedule.ledger import StepRecord, finished_steps, record_step
from lakecast.schedule.lock import DEFAULT_LEASE, holding
from lakecast.schedule.loop_steps import quality_waiting, run_drift, run_quality
from lakecast.schedule.tables import ScheduleTables

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from lakecast.config import Settings

JOB = "daily"
STEPS = ("extract", "score", "archive", "report", "quality", "drift")
CHECKS = frozenset({"report", "quality", "drift"})  # a failure here does not stop the others
# Before the quality loop, the step that writes reports/daily_quality was named "quality"; its
# ledger rows say so by their summary's kind and count as "report" (see _finished).
_LEGACY_REPORT_KIND = "predictions_summary"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DailyPlan:
    """Where a daily run reads and writes, and the model it scores with."""

    events: str
    features: str
    entity_features: str
    predictions: str
    registry: str
    model: str
    bootstrap: str
    predictions_topic: str
    metrics_topic: str
    served_features_topic: str
    archive_predictions: str
    archive_metrics: str
    archive_served_features: str
    archive_checkpoints: str
    quality_report: str
    model_quality: str
    feature_drift: str
    feature_skew: str
    schedule_root: str
    kafka_options: Mapping[str, str] = field(default_factory=dict)
    quality: QualitySettings = field(default_factory=QualitySettings)
    drift: DriftSettings = field(default_factory=DriftSettings)
    # Where the quality and drift steps send their kind=quality / kind=drift records (its
    # topics.metrics); None sends none.
    kafka: KafkaSettings | None = None

    @classmethod
    def from_settings(cls, cfg: Settings, *, model: str | None = None) -> DailyPlan:
        """The tables of ``jobs/*.py``'s defaults under the configured lake root."""
        from lakecast.lake.archive import kafka_client_options
        from lakecast.lake.tables import (
            FEATURE_DRIFT,
            FEATURE_SKEW,
            MODEL_QUALITY,
            SERVED_FEATURES_ARCHIVE,
        )

        lake, topics = cfg.lake, cfg.kafka.topics
        return cls(
            events=lake.table("events"),
            features=lake.table("features"),
            entity_features=lake.table("entity_features"),
            predictions=lake.table("predictions"),
            registry=cfg.registry_root,
            model=model or cfg.serving.model,
            bootstrap=cfg.kafka.bootstrap_servers,
            predictions_topic=topics.predictions,
            metrics_topic=topics.metrics,
            served_features_topic=topics.served_features,
            archive_predictions=lake.table("archive/predictions"),
            archive_metrics=lake.table("archive/metrics"),
            archive_served_features=lake.table(SERVED_FEATURES_ARCHIVE),
            archive_checkpoints=lake.table("_checkpoints/archive"),
            quality_report=lake.table("reports/daily_quality"),
            model_quality=lake.table(MODEL_QUALITY),
            feature_drift=lake.table(FEATURE_DRIFT),
            feature_skew=lake.table(FEATURE_SKEW),
            schedule_root=lake.table("_schedule"),
            kafka_options=kafka_client_options(cfg.kafka.security),
            quality=cfg.quality,
            drift=cfg.drift,
            kafka=cfg.kafka,
        )


@dataclass(frozen=True)
class StepOutcome:
    """What one step of a date's run did; printed as one JSON line."""

    run_date: date
    step: str
    status: str  # done, skipped, waiting or failed
    seconds: float
    summary: dict[str, Any]

    def json_line(self) -> str:
        return json.dumps(
            {
                "job": JOB,
                "run_date": self.run_date.isoformat(),
                "step": self.step,
                "status": self.status,
                "seconds": round(self.seconds, 3),
                "summary": self.summary,
            },
            sort_keys=True,
            default=str,
        )


Step = Callable[["SparkSession", DailyPlan, date, str], dict[str, Any]]


def _extract(spark: SparkSession, plan: DailyPlan, run_date: date, run_id: str) -> dict[str, Any]:
    from lakecast.features.extract import extract_features

    summary = extract_features(
        spark,
        events_path=plan.events,
        features_path=plan.features,
        entity_features_path=plan.entity_features,
        run_date=run_date,
    )
    return summary.as_dict()


def _score(spark: SparkSession, plan: DailyPlan, run_date: date, run_id: str) -> dict[str, Any]:
    from lakecast.scoring.run import ScoringRequest, score_batch

    request = ScoringRequest(
        model=plan.model,
        features_path=plan.features,
        predictions_path=plan.predictions,
        registry_root=plan.registry,
        incremental=True,
        run_id=run_id,
    )
    return score_batch(spark, request).as_dict()


def _archive(spark: SparkSession, plan: DailyPlan, run_date: date, run_id: str) -> dict[str, Any]:
    from lakecast.lake.archive import ArchiveTarget, broker_topics, start_archive, topics_on_broker

    configured = [
        ArchiveTarget("predictions", plan.predictions_topic, plan.archive_predictions,
                      f"{plan.archive_checkpoints}/predictions"),
        ArchiveTarget("metrics", plan.metrics_topic, plan.archive_metrics,
                      f"{plan.archive_checkpoints}/metrics"),
        ArchiveTarget("served_features", plan.served_features_topic, plan.archive_served_features,
                      f"{plan.archive_checkpoints}/served_features"),
    ]  # fmt: skip
    # A topic no one has written yet (served_features before any worker sampled) has nothing
    # to archive; Spark's Kafka source would fail the query on it (see topics_on_broker).
    existing = broker_topics(plan.kafka or settings().kafka, plan.bootstrap)
    targets, missing = topics_on_broker(configured, existing, available_now=True)
    for target in missing:
        log.warning("archive: no topic %r on %s: %s not archived", target.topic, plan.bootstrap,
                    target.kind)  # fmt: skip
    archived: dict[str, int] = {}
    for target in targets:  # one at a time: two queries at once only compete for 2 cores
        query = start_archive(
            spark,
            plan.bootstrap,
            target,
            available_now=True,
            kafka_options=dict(plan.kafka_options),
        )
        query.awaitTermination()
        archived[target.kind] = sum(int(p.get("numInputRows", 0)) for p in query.recentProgress)
    return {
        "archived_rows": archived,
        "missing_topics": {target.kind: target.topic for target in missing},
    }


def _report(spark: SparkSession, plan: DailyPlan, run_date: date, run_id: str) -> dict[str, Any]:
    from lakecast.schedule.quality import write_daily_report

    return write_daily_report(spark, plan.predictions, plan.quality_report, run_date).as_dict()


STEP_FUNCTIONS: dict[str, Step] = {
    "extract": _extract,
    "score": _score,
    "archive": _archive,
    "report": _report,
    "quality": run_quality,
    "drift": run_drift,
}
# Steps that may not be able to run yet: the summary of why, or None when they can.
WAITS: dict[str, Callable[[DailyPlan, date, datetime], dict[str, Any] | None]] = {
    "quality": quality_waiting,
}


def _finished(tables: ScheduleTables, run_date: date) -> dict[str, StepRecord]:
    done = finished_steps(tables, JOB, run_date)
    legacy = done.get("quality")
    if legacy is not None and legacy.summary.get("kind") == _LEGACY_REPORT_KIND:
        done["report"] = done.pop("quality")
    return done


def check_steps(steps: Sequence[str]) -> tuple[str, ...]:
    """``steps`` in the run's order; an unknown name is refused by name."""
    unknown = [step for step in steps if step not in STEPS]
    if unknown:
        msg = (
            f"run daily: unknown step(s) {', '.join(map(repr, unknown))}; steps: {', '.join(STEPS)}"
        )
        raise ScheduleError(msg)
    chosen = set(steps) or set(STEPS)
    return tuple(step for step in STEPS if step in chosen)


def run_daily(
    plan: DailyPlan,
    run_date: date,
    *,
    spark: Callable[[], SparkSession],
    steps: Sequence[str] = STEPS,
    force: bool = False,
    lease: timedelta = DEFAULT_LEASE,
    emit: Callable[[str], None] = print,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[StepOutcome]:
    """Run ``steps`` of ``run_date`` in order under the date's lock, skipping finished ones.

    Args:
        spark: called for a session only when a step has work to do.
        force: redo steps even if recorded as finished.
        emit: receives each step's JSON line as soon as the step ends.
        now: the clock that says whether the date's outcomes are final.

    Raises:
        RunLockedError: another process runs this date now.
        LakecastError: a step failed (its ``failed`` line was emitted first); a failed check
            is raised after the other checks ran.
    """
    chosen = check_steps(steps)
    tables = ScheduleTables(plan.schedule_root)
    outcomes: list[StepOutcome] = []
    failure: Exception | None = None
    with holding(tables, f"{JOB}/{run_date.isoformat()}", lease=lease):
        done = {} if force else _finished(tables, run_date)
        run_id = uuid.uuid4().hex
        for step in chosen:
            waiting = WAITS[step](plan, run_date, now()) if step in WAITS else None
            if step in done:
                record = done[step]
                outcome = StepOutcome(
                    run_date,
                    step,
                    "skipped",
                    0.0,
                    {"finished_at": record.finished_at.isoformat(), "run_id": record.run_id},
                )
            elif waiting is not None:
                outcome = StepOutcome(run_date, step, "waiting", 0.0, waiting)
            else:
                try:
                    outcome = _run_step(tables, plan, run_date, step, run_id, spark, emit)
                except Exception as exc:
                    if step not in CHECKS:
                        raise
                    failure = failure or exc
                    outcomes.append(_failed_outcome(run_date, step, exc))
                    continue  # its failed line is out; the other checks still run
            outcomes.append(outcome)
            emit(outcome.json_line())
    if failure is not None:
        raise failure
    return outcomes


def _failed_outcome(run_date: date, step: str, exc: BaseException) -> StepOutcome:
    return StepOutcome(run_date, step, "failed", 0.0, {"error": one_line(describe_error(exc))})


def _run_step(
    tables: ScheduleTables,
    plan: DailyPlan,
    run_date: date,
    step: str,
    run_id: str,
    spark: Callable[[], SparkSession],
    emit: Callable[[str], None],
) -> StepOutcome:
    started = time.monotonic()
    try:
        summary = STEP_FUNCTIONS[step](spark(), plan, run_date, run_id)
    except BaseException as exc:
        failed = StepOutcome(
            run_date,
            step,
            "failed",
            time.monotonic() - started,
            {"error": one_line(describe_error(exc))},
        )
        emit(failed.json_line())
        raise
    seconds = time.monotonic() - started
    record_step(tables, JOB, run_date, step, run_id=run_id, seconds=seconds, summary=summary)
    return StepOutcome(run_date, step, "done", seconds, summary)


def dates_between(first: date, last: date) -> Iterator[date]:
    """``first`` .. ``last``, both included, in order."""
    if last < first:
        msg = f"run daily: --to {last} is before --from {first}"
        raise ScheduleError(msg)
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)
