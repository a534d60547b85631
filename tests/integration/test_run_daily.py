"""``lakecast run daily`` on a real Spark, Delta lake and Kafka broker: a date run twice and
dates run out of order leave the same tables as one in-order run; finished steps are skipped.

Two lakes read the same events table, registry and topics: lake A runs D1 then D2, lake B runs
D2, then D1, then D2 again. Columns that name a run (``run_id``, ``scored_at``, the
``features_table_version`` a row was scored from, which counts the commits before it, and the
time a quality or drift figure was computed) are left out of the comparison; every other
column of every table must match row for row.

The model-quality loop's steps: ``quality`` writes ``model_quality`` for the date (and, in lake
A, sends ``kind=quality`` records), waiting while the date's outcomes are not final; ``drift``
flags the one feature the served-feature sample of D1 shifts (and sends ``kind=drift``); the
day's summary line reads both back with the model's age.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from lakecast.config import KafkaSettings, TopicNames
from lakecast.features.spec import FEATURE_COLUMNS
from lakecast.schedule.daily import STEPS, DailyPlan, run_daily
from lakecast.schedule.day_summary import day_summary
from lakecast.testing.daily import (
    SERVED_SAMPLES,
    TOPIC_RECORDS,
    SmallLake,
    metric_records,
    small_lake,
)
from lakecast.testing.kafka import read_json

D1, D2 = date(2026, 1, 2), date(2026, 1, 3)
RUN_COLUMNS = ("run_id", "scored_at", "features_table_version", "evaluated_at", "computed_at")


@pytest.fixture(scope="module")
def sources(spark: Any, kafka_broker: Any, tmp_path_factory: pytest.TempPathFactory) -> SmallLake:
    """Events over three days, a registered champion, and two topics holding a few records."""
    return small_lake(
        spark, tmp_path_factory.mktemp("daily-sources"), kafka_broker.bootstrap_servers
    )


def _plan(sources: SmallLake, root: Path, published: str | None = None) -> DailyPlan:
    kafka = None
    if published is not None:
        kafka = KafkaSettings(
            bootstrap_servers=sources.bootstrap, topics=TopicNames(metrics=published)
        )
    return DailyPlan(
        events=sources.events,
        features=str(root / "features"),
        entity_features=str(root / "entity_features"),
        predictions=str(root / "predictions"),
        registry=sources.registry,
        model="purchase@champion",
        bootstrap=sources.bootstrap,
        predictions_topic=sources.predictions_topic,
        metrics_topic=sources.metrics_topic,
        served_features_topic=sources.served_features_topic,
        archive_predictions=str(root / "archive" / "predictions"),
        archive_metrics=str(root / "archive" / "metrics"),
        archive_served_features=str(root / "archive" / "served_features"),
        archive_checkpoints=str(root / "_checkpoints" / "archive"),
        quality_report=str(root / "reports" / "daily_quality"),
        model_quality=str(root / "monitoring" / "model_quality"),
        feature_drift=str(root / "monitoring" / "feature_drift"),
        feature_skew=str(root / "monitoring" / "feature_skew"),
        schedule_root=str(root / "_schedule"),
        kafka=kafka,
    )


def _run(
    spark: Any, plan: DailyPlan, day: date, now: datetime | None = None
) -> list[dict[str, Any]]:
    lines: list[str] = []
    clock = (lambda: now) if now is not None else (lambda: datetime.now(UTC))
    run_daily(plan, day, spark=lambda: spark, emit=lines.append, now=clock)
    print(*lines, sep="\n")  # the step times, with -s
    return [json.loads(line) for line in lines]


def _table(spark: Any, path: str) -> list[tuple[Any, ...]]:
    frame = spark.read.format("delta").load(path)
    kept = sorted(c for c in frame.columns if c not in RUN_COLUMNS)
    return sorted((tuple(row) for row in frame.select(*kept).collect()), key=repr)


def _tables(spark: Any, plan: DailyPlan) -> dict[str, list[tuple[Any, ...]]]:
    paths = {
        "features": plan.features,
        "entity_features": plan.entity_features,
        "predictions": plan.predictions,
        "archive_predictions": plan.archive_predictions,
        "archive_metrics": plan.archive_metrics,
        "archive_served_features": plan.archive_served_features,
        "quality_report": plan.quality_report,
        "model_quality": plan.model_quality,
        "feature_drift": plan.feature_drift,
    }
    return {name: _table(spark, path) for name, path in paths.items()}


def _step(lines: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(line for line in lines if line["step"] == name)


def test_reruns_and_out_of_order_dates_match_one_in_order_run(
    spark: Any, sources: SmallLake, tmp_path: Path, topic_factory: Callable[..., str]
) -> None:
    published = topic_factory("published")
    in_order = _plan(sources, tmp_path / "a", published)
    shuffled = _plan(sources, tmp_path / "b")
    first = _run(spark, in_order, D1)
    assert [(line["step"], line["status"]) for line in first] == [(s, "done") for s in STEPS]
    assert _step(first, "archive")["summary"]["archived_rows"] == {
        "predictions": TOPIC_RECORDS,
        "metrics": len(metric_records(datetime.now(UTC))),
        "served_features": SERVED_SAMPLES,
    }
    quality = _step(first, "quality")["summary"]
    assert [g["version"] for g in quality["groups"]] == [sources.model_version]
    assert quality["groups"][0]["count"] > 0 and quality["published"] == 1
    drift = _step(first, "drift")["summary"]["versions"][sources.model_version]
    assert drift["rows"] == SERVED_SAMPLES
    assert drift["drifted"] == [FEATURE_COLUMNS[0]]  # the one feature the sample shifts
    assert drift["skew"] == {"compared": 0, "unmatched": SERVED_SAMPLES, "differences": 0}

    # D2 half an hour after its end: the outcomes are not final, quality waits, unrecorded.
    early = _run(spark, in_order, D2, now=datetime(2026, 1, 4, 0, 30, tzinfo=UTC))
    assert [(line["step"], line["status"]) for line in early] == [
        (s, "waiting" if s == "quality" else "done") for s in STEPS
    ]
    assert _step(early, "quality")["summary"]["settles_at"] == "2026-01-04T01:00:00+00:00"
    assert _step(early, "drift")["summary"]["versions"] == {}  # nothing served on D2
    settled = _run(spark, in_order, D2, now=datetime(2026, 1, 4, 1, 0, tzinfo=UTC))
    assert [(line["step"], line["status"]) for line in settled] == [
        (s, "done" if s == "quality" else "skipped") for s in STEPS
    ]

    summary = day_summary(in_order, D1, [], now=datetime(2026, 1, 11, tzinfo=UTC))["day_summary"]
    assert [(q["version"], q["count"]) for q in summary["quality"]] == [
        (sources.model_version, quality["groups"][0]["count"])
    ]
    assert summary["drift"][f"purchase:{sources.model_version}"]["drifted"] == [FEATURE_COLUMNS[0]]
    assert summary["age"]["model_age_days"] == 10.0  # training data ended 2026-01-01 00:00
    assert summary["age"]["age_from"] == "training_data_end"
    records = read_json(sources.bootstrap, published, at_least=2 + len(FEATURE_COLUMNS))
    assert sorted(r["day"] for r in records if r["kind"] == "quality") == [
        "2026-01-02",
        "2026-01-03",
    ]
    flagged = [r["feature"] for r in records if r["kind"] == "drift" and r["drifted"]]
    assert flagged == [FEATURE_COLUMNS[0]]

    late = _run(spark, shuffled, D2)
    assert [line["status"] for line in late] == ["done"] * len(STEPS)
    _run(spark, shuffled, D1)
    again = _run(spark, shuffled, D2)
    assert [(line["step"], line["status"]) for line in again] == [(s, "skipped") for s in STEPS]
    assert {line["summary"]["run_id"] for line in again} == {late[1]["summary"]["run_id"]}

    expected, found = _tables(spark, in_order), _tables(spark, shuffled)
    for name, rows in expected.items():
        assert rows, f"{name} is empty: the comparison would prove nothing"
        differ = sorted(set(map(repr, found[name])) ^ set(map(repr, rows)))[:4]
        assert found[name] == rows, f"{name} differs between the two orders: {differ}"
    days = {row["run_date"] for row in (first[3]["summary"], late[3]["summary"])}  # report
    assert days == {D1.isoformat(), D2.isoformat()}
    report = spark.read.format("delta").load(in_order.quality_report)
    counts = {r["date"]: r["rows"] for r in report.collect()}
    scored = spark.read.format("delta").load(in_order.predictions).toPandas()
    by_day = scored["ts"].dt.date.value_counts().to_dict()
    assert counts == {D1: by_day[D1], D2: by_day[D2]}  # the report counts each day's rows
