"""``lakecast run daily`` on a real Spark, Delta lake and Kafka broker: a date run twice and
dates run out of order leave the same tables as one in-order run; finished steps are skipped.

Two lakes read the same events table, registry and topics: lake A runs D1 then D2, lake B runs
D2, then D1, then D2 again. Columns that name a run (``run_id``, ``scored_at``, and the
``features_table_version`` a row was scored from, which counts the commits before it) are left
out of the comparison; every other column of every table must match row for row.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from lakecast.schedule.daily import STEPS, DailyPlan, run_daily
from lakecast.testing.daily import TOPIC_RECORDS, SmallLake, metric_records, small_lake

D1, D2 = date(2026, 1, 2), date(2026, 1, 3)
RUN_COLUMNS = ("run_id", "scored_at", "features_table_version")


@pytest.fixture(scope="module")
def sources(spark: Any, kafka_broker: Any, tmp_path_factory: pytest.TempPathFactory) -> SmallLake:
    """Events over three days, a registered champion, and two topics holding a few records."""
    return small_lake(
        spark, tmp_path_factory.mktemp("daily-sources"), kafka_broker.bootstrap_servers
    )


def _plan(sources: SmallLake, root: Path) -> DailyPlan:
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
        archive_predictions=str(root / "archive" / "predictions"),
        archive_metrics=str(root / "archive" / "metrics"),
        archive_checkpoints=str(root / "_checkpoints" / "archive"),
        quality_report=str(root / "reports" / "daily_quality"),
        schedule_root=str(root / "_schedule"),
    )


def _run(spark: Any, plan: DailyPlan, day: date) -> list[dict[str, Any]]:
    lines: list[str] = []
    run_daily(plan, day, spark=lambda: spark, emit=lines.append)
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
        "quality_report": plan.quality_report,
    }
    return {name: _table(spark, path) for name, path in paths.items()}


def test_reruns_and_out_of_order_dates_match_one_in_order_run(
    spark: Any, sources: SmallLake, tmp_path: Path
) -> None:
    in_order, shuffled = _plan(sources, tmp_path / "a"), _plan(sources, tmp_path / "b")
    first = _run(spark, in_order, D1)
    assert [(line["step"], line["status"]) for line in first] == [(s, "done") for s in STEPS]
    assert first[2]["summary"]["archived_rows"] == {
        "predictions": TOPIC_RECORDS,
        "metrics": len(metric_records(datetime.now(UTC))),
    }
    _run(spark, in_order, D2)

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
    days = {row["run_date"] for row in (first[3]["summary"], late[3]["summary"])}
    assert days == {D1.isoformat(), D2.isoformat()}
    report = spark.read.format("delta").load(in_order.quality_report)
    counts = {r["date"]: r["rows"] for r in report.collect()}
    scored = spark.read.format("delta").load(in_order.predictions).toPandas()
    by_day = scored["ts"].dt.date.value_counts().to_dict()
    assert counts == {D1: by_day[D1], D2: by_day[D2]}  # the report counts each day's rows
