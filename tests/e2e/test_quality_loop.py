"""The quality loop end to end on demo data with a planted concept shift.

From day 2 of a 4-day run the device and price terms of the purchase signal reverse
(``ConceptShift``). A champion trained on days 0-1 scores every day (the batch job); the
quality job joins its predictions with the realised outcomes and finds the shifted days'
AUC far below the version's holdout; the monitor alerts on it; ``lakecast retrain`` (the real
command, a subprocess against the session broker) reads that evidence from the metrics topic,
trains a candidate on the freshest days, runs the gates and a canary judged on outcome
metrics, and promotes it. The promoted version ranks the shifted day better than the old
champion, and every step is on record: quality, alert, rollout and retrain records on the
topic, and rollout and retrain rows in the registry's audit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from lakecast.config import KafkaSettings, QualitySettings
from lakecast.data.clickstream import ClickstreamRun, generate_events
from lakecast.data.events_table import write_events
from lakecast.data.world import ConceptShift
from lakecast.features.extract import extract_features
from lakecast.features.spec import FEATURE_COLUMNS, LABEL_COLUMN
from lakecast.kafka.readback import read_topic
from lakecast.kafka.serde import decode_metric
from lakecast.monitoring.monitor import MonitorService
from lakecast.quality.evaluate import QualityRequest, evaluate_quality
from lakecast.quality.metrics import roc_auc
from lakecast.quality.publish import send_metric_records
from lakecast.registry import Registry
from lakecast.retrain.candidate import CandidateRequest, train_candidate
from lakecast.rollout.journal import audit_decisions
from lakecast.scoring.run import ScoringRequest, score_batch

if TYPE_CHECKING:
    from collections.abc import Callable

    from pyspark.sql import SparkSession

ROOT = Path(__file__).resolve().parents[2]
START = date(2026, 3, 2)
RUN = ClickstreamRun(rows=24_000, days=4, seed=11, start_date=START, shift=ConceptShift(2))
DAYS = [START + timedelta(days=i) for i in range(RUN.days)]
MODEL = "purchase"


def _auc_on(registry: Registry, ref: str, features: str, day: date) -> float:
    table = DeltaTable(features).to_pyarrow_table(columns=["date", *FEATURE_COLUMNS, LABEL_COLUMN])
    rows = table.filter(pc.and_(pc.equal(table["date"], day), pc.is_valid(table[LABEL_COLUMN])))
    _, predictor = registry.load(ref)
    auc = roc_auc(rows[LABEL_COLUMN].to_numpy(), predictor.predict(rows))
    assert auc is not None
    return auc


def test_planted_shift_is_detected_retrained_canaried_and_promoted(
    spark: SparkSession, tmp_path: Path, bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    lake = {name: str(tmp_path / name) for name in ("events", "features", "entity_features")}
    lake |= {name: str(tmp_path / name) for name in ("predictions", "archive", "quality")}
    registry_root = str(tmp_path / "registry")
    metrics_topic = topic_factory("metrics")
    kafka = KafkaSettings(bootstrap_servers=bootstrap)

    # The lake: shifted events, their features, a champion of the days before the shift.
    write_events(generate_events(spark, RUN.rows, RUN.days, RUN.seed, START, RUN.shift),
                 lake["events"], RUN)  # fmt: skip
    extract_features(spark, events_path=lake["events"], features_path=lake["features"],
                     entity_features_path=lake["entity_features"], run_date=None)  # fmt: skip
    registry = Registry(registry_root)
    first = train_candidate(
        registry,
        CandidateRequest(lake["features"], MODEL, train_days=2, last_day=DAYS[1],
                         alias="champion", reason="first champion, before the shift"),
    )  # fmt: skip
    score_batch(spark, ScoringRequest(model=f"{MODEL}@champion", features_path=lake["features"],
                                      predictions_path=lake["predictions"],
                                      registry_root=registry_root))  # fmt: skip

    # The streaming path's archive: day 3's events as a worker served them under a rollout
    # (variant champion), the same scores, from the archived predictions topic's table.
    from pyspark.sql import functions as F

    served = spark.read.format("delta").load(lake["predictions"])
    served.filter(F.to_date("ts") == F.lit(DAYS[-1])).select(
        "event_id", "user_id", "ts", "score", "model_name", "model_version",
        F.lit("champion").alias("variant"), F.lit(True).alias("served"),
        F.to_date("ts").alias("date"),
    ).write.format("delta").save(lake["archive"])  # fmt: skip

    # Outcomes -> model_quality and kind=quality records.
    run = evaluate_quality(
        spark,
        QualityRequest(
            events_path=lake["events"],
            quality_path=lake["quality"],
            registry_root=registry_root,
            predictions_path=lake["predictions"],
            archive_path=lake["archive"],
            first_day=DAYS[0],
            last_day=DAYS[-1],
            as_of=datetime.combine(DAYS[-1] + timedelta(days=2), datetime.min.time(), UTC),
        ),
    )
    by_day = {r["day"]: r for r in run.records if r["variant"] == "default"}
    assert sorted(by_day) == [d.isoformat() for d in DAYS]
    assert {r["version"] for r in run.records} == {first.version}
    (streamed,) = [r for r in run.records if r["variant"] == "champion"]
    assert streamed["day"] == DAYS[-1].isoformat()
    same_day = by_day[DAYS[-1].isoformat()]
    assert streamed["count"] == same_day["count"]
    assert streamed["auc"] == pytest.approx(same_day["auc"])
    holdout_auc = first.metrics["holdout_roc_auc"]
    assert all(r["holdout"]["auc"] == pytest.approx(holdout_auc) for r in by_day.values())
    shifted = [by_day[d.isoformat()]["auc"] for d in DAYS[2:]]
    assert max(shifted) < holdout_auc - 0.05, (holdout_auc, by_day)
    table = DeltaTable(lake["quality"]).to_pyarrow_table()
    assert table.num_rows == len(run.records)
    assert set(table.column("count").to_pylist()) == {r["count"] for r in run.records}
    assert send_metric_records(kafka, "quality", "evaluate-quality", run.records,
                               topic=metrics_topic) == len(run.records)  # fmt: skip

    # The monitor alerts on the drop, from the records as they are on the topic.
    monitor = MonitorService(kafka, metrics_topic, quality=QualitySettings(min_count=100))
    alerts = [
        alert
        for message in read_topic(kafka, metrics_topic, at_least=len(run.records))
        for alert in monitor.handle(message) or []
    ]
    alerted_days = {a["day"] for a in alerts if a["metric"] == "quality_auc"}
    assert {d.isoformat() for d in DAYS[2:]} <= alerted_days
    assert DAYS[0].isoformat() not in alerted_days

    # lakecast retrain, as cron would run it after the quality job.
    env = os.environ | {
        "LAKECAST__KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "LAKECAST__QUALITY__MIN_COUNT": "100",
        "LAKECAST__RETRAIN__TRAIN_DAYS": "2",
    }
    done = subprocess.run(
        [sys.executable, "-m", "lakecast.cli.main", "retrain", "--model", MODEL,
         "--metrics-topic", metrics_topic, "--features", lake["features"],
         "--root", registry_root, "--timeout", "120"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    decision = json.loads(done.stdout.strip().splitlines()[-1])
    assert decision["trigger"] == "quality"
    assert {e["day"] for e in decision["evidence"]["quality"]} == {DAYS[-1].isoformat()}
    assert decision["action"] == "retrained_and_canaried"
    assert decision["outcome"] == "promoted", decision
    new = decision["new_version"]
    assert decision["verdicts"] and decision["verdicts"][0]["verdict"] == "pass"

    # The promoted version ranks the shifted, held-out day better than the old champion.
    assert registry.resolve(f"{MODEL}@champion").version == new
    old_auc = _auc_on(registry, f"{MODEL}:{first.version}", lake["features"], DAYS[-1])
    new_auc = _auc_on(registry, f"{MODEL}:{new}", lake["features"], DAYS[-1])
    assert new_auc > old_auc + 0.05, (old_auc, new_auc)

    # Every step on record: the topic ...
    records = [decode_metric(m.value) for m in read_topic(kafka, metrics_topic)]
    kinds = [r["kind"] for r in records]
    assert kinds.count("quality") == len(run.records)
    rollout_events = [r["event"] for r in records if r["kind"] == "rollout"]
    assert rollout_events[0] == "started" and rollout_events[-1] == "promoted"
    assert "verdict" in rollout_events
    (retrain,) = [r for r in records if r["kind"] == "retrain"]
    assert retrain["new_version"] == new and retrain["outcome"] == "promoted"
    # ... and the registry's audit.
    audit = registry.audit(MODEL)
    retrain_rows = [e for e in audit if e.action == "retrain"]
    assert len(retrain_rows) == 1 and json.loads(retrain_rows[0].reason)["trigger"] == "quality"
    decisions = [d["event"] for d in audit_decisions(registry, MODEL)]
    assert decisions[0] == "started" and decisions[-1] == "promoted"
    moves: list[Any] = [e for e in audit if e.action == "promote" and e.alias == "champion"]
    assert moves[-1].version == new
    assert np.isfinite(new_auc)
