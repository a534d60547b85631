"""For the same events and model version, the worker's scores equal the batch job's (1e-6).

The lake is built by the real pipeline: the generator writes three days of events, the extract
job computes their features and the entity snapshot of the last day D, and both flavors are
trained and registered on those features (scikit-learn ``champion``, Keras ``challenger``).

The worker scores an event with the aggregates of the latest snapshot (as of D's end, ``T``);
the batch job with point-in-time aggregates (every event strictly before the scored one). The
two agree wherever the snapshot *is* the event's point-in-time state, which is what the
snapshot promises (``lakecast.features.aggregates``): so the probe day D+1 holds
  - "as-of" events at exactly ``T``, by users and products of the generated world, whose
    point-in-time aggregates are the snapshot's by definition (same windows, same end, events
    at ``T`` itself excluded on both sides); and
  - "first-seen" events spread over the day, each by a user and a product never seen before,
    whose aggregates are the defaults on both sides; these vary the time-of-day features.

The probe day is replayed into the ``events`` topic by the replayer's own code, served by the
real worker (exactly once, read back with ``read_committed``), and then, as the nightly run
would, extracted (point in time) and scored by ``score_batch``. The D+1 extraction writes its
own snapshot elsewhere: the worker serves D+1 with D's snapshot, which is the point.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from lakecast.config import KafkaSettings
from lakecast.data.clickstream import ClickstreamRun, generate_events
from lakecast.data.events_table import write_events
from lakecast.data.replay import event_payloads, read_events, replay
from lakecast.features.aggregates import day_start
from lakecast.features.extract import extract_features
from lakecast.features.online import online_features
from lakecast.features.snapshot import load_snapshot
from lakecast.features.spec import FEATURE_COLUMNS
from lakecast.kafka.clients import build_producer
from lakecast.kafka.serde import decode_prediction
from lakecast.models.training import GradientBoostingRecipe, MlpRecipe
from lakecast.models.training_run import TrainingRequest, train_and_register
from lakecast.registry import Registry
from lakecast.scoring.run import ScoringRequest, score_batch
from lakecast.serving.decoding import decode_event_record, events_table
from lakecast.testing.kafka import read_committed
from tests.integration.lake_fixtures import GeneratedLake, generated_lake
from tests.integration.worker_fixtures import ThreadedWorker, drain, worker_topics

HISTORY = ClickstreamRun(rows=9_000, days=3, seed=11, start_date=dt.date(2026, 2, 2))
PROBE_DAY = HISTORY.end_date + dt.timedelta(days=1)
PROBE_ROWS = 900
FIRST_SEEN_PREFIX = "first-seen-"
MODEL = "purchase"
TOLERANCE = 1e-6
STREAM_TIMEOUT_S = 240.0  # the first Keras batch imports TensorFlow on a loaded 2-core machine


@dataclass(frozen=True)
class ParityLake:
    lake: GeneratedLake
    probe_ids: frozenset[str]
    as_of_ids: frozenset[str]


def _write_probe_day(spark: Any, events_path: str) -> None:
    """Events of PROBE_DAY from the same world: as-of events at ``T``, first-seen ones later."""
    from pyspark.sql import functions as F

    run = ClickstreamRun(PROBE_ROWS, 1, HISTORY.seed, PROBE_DAY)
    frame = generate_events(spark, run.rows, run.days, run.seed, run.start_date)
    first_seen = F.abs(F.xxhash64("event_id")) % 3 == 0
    at_t = F.timestamp_seconds(F.lit(int(day_start(PROBE_DAY).timestamp())))

    def renamed(column: str) -> Any:
        return F.when(first_seen, F.concat(F.lit(f"{FIRST_SEEN_PREFIX}{column}-"), "event_id"))

    probes = (
        frame.withColumn("user_id", renamed("user").otherwise(F.col("user_id")))
        .withColumn("product_id", renamed("product").otherwise(F.col("product_id")))
        .withColumn("ts", F.when(first_seen, F.col("ts")).otherwise(at_t))
    )
    write_events(probes, events_path, run)


@pytest.fixture(scope="module")
def parity(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> ParityLake:
    lake, summary = generated_lake(spark, tmp_path_factory.mktemp("parity"), HISTORY)
    assert summary.snapshot_date == HISTORY.end_date.isoformat()
    train_and_register(
        spark,
        TrainingRequest(
            features_path=lake.features,
            registry_root=lake.registry,
            model_name=MODEL,
            gradient_boosting=GradientBoostingRecipe(max_iter=40, seed=3),
            mlp=MlpRecipe(hidden=(32, 16), epochs=3, seed=3),
        ),
    )
    _write_probe_day(spark, lake.events)
    probes = read_events(lake.events, PROBE_DAY, PROBE_DAY)
    ids = probes.column("event_id").to_pylist()
    users = probes.column("user_id").to_pylist()
    # The nightly run of PROBE_DAY: point-in-time features of the probes. Its snapshot goes
    # to a table of its own, so that the worker keeps serving with D's.
    summary = extract_features(
        spark,
        events_path=lake.events,
        features_path=lake.features,
        entity_features_path=str(lake.root / "entity_features_after"),
        run_date=PROBE_DAY,
    )
    assert summary.feature_rows == len(ids)
    return ParityLake(
        lake=lake,
        probe_ids=frozenset(ids),
        as_of_ids=frozenset(
            i for i, u in zip(ids, users, strict=True) if not u.startswith(FIRST_SEEN_PREFIX)
        ),
    )


def _batch_features(spark: Any, parity: ParityLake) -> pa.Table:
    from pyspark.sql import functions as F

    frame = spark.read.format("delta").load(parity.lake.features)
    rows = frame.filter(F.col("date") == F.lit(PROBE_DAY)).toArrow()
    return rows.sort_by("event_id")


def test_online_features_of_the_replayed_probes_equal_their_point_in_time_features(
    spark: Any, parity: ParityLake
) -> None:
    """The worker's decode + feature path on the replayed payloads, column by column."""
    payloads = list(event_payloads(read_events(parity.lake.events, PROBE_DAY, PROBE_DAY)))
    events = events_table(
        sorted((decode_event_record(value) for _, value in payloads), key=lambda e: e.event_id)
    )
    snapshot = load_snapshot(parity.lake.entity_features)
    assert snapshot.snapshot_date == HISTORY.end_date
    online = online_features(events, snapshot)
    batch = _batch_features(spark, parity)
    assert events.column("event_id").to_pylist() == batch.column("event_id").to_pylist()

    for name in FEATURE_COLUMNS:
        expected = batch.column(name).to_numpy()
        np.testing.assert_allclose(online[name], expected, rtol=1e-12, atol=1e-9, err_msg=name)

    # The comparison is not of defaults with defaults: most as-of probes have history.
    as_of = pc.is_in(batch.column("event_id"), pa.array(sorted(parity.as_of_ids)))
    known = batch.filter(as_of)
    assert len(parity.as_of_ids) > PROBE_ROWS / 2
    assert np.mean(known.column("user_events_7d").to_numpy() > 0) > 0.5
    assert np.mean(known.column("product_views_7d").to_numpy() > 0) > 0.5
    first_seen = batch.filter(pc.invert(as_of))
    assert first_seen.num_rows > PROBE_ROWS / 5
    assert len(set(first_seen.column("hour_sin").to_pylist())) > 20
    assert not first_seen.column("user_events_7d").to_numpy().any()


def _stream_scores(
    bootstrap: str, parity: ParityLake, topics: dict[str, str], group: str, reference: str
) -> tuple[dict[str, float], set[str]]:
    """Replay the probe day, serve it with ``reference``; scores and model versions by event."""
    table = read_events(parity.lake.events, PROBE_DAY, PROBE_DAY)
    producer = build_producer(
        KafkaSettings(bootstrap_servers=bootstrap), mode="at_least_once", client_id="parity"
    )
    try:
        sent = replay(producer, topics["events"], event_payloads(table)).events
    finally:
        producer.close()
    assert sent == len(parity.probe_ids)
    worker = ThreadedWorker(bootstrap, parity.lake, topics, group, reference=reference)
    try:
        drain(bootstrap, group, topics["events"], sent, worker, timeout_s=STREAM_TIMEOUT_S)
    finally:
        worker.stop()
    predictions = [
        decode_prediction(r.value)
        for r in read_committed(bootstrap, topics["predictions"], at_least=sent)
    ]
    counts = Counter(p.event_id for p in predictions)
    assert counts == Counter(parity.probe_ids), "each probe must be scored exactly once"
    assert read_committed(bootstrap, topics["dlq"], at_least=0, quiet_s=0.5) == []
    return {p.event_id: p.score for p in predictions}, {p.model.version for p in predictions}


def _batch_scores(
    spark: Any, parity: ParityLake, predictions: str, reference: str
) -> tuple[dict[str, float], str]:
    summary = score_batch(
        spark,
        ScoringRequest(
            model=reference,
            features_path=parity.lake.features,
            predictions_path=predictions,
            registry_root=parity.lake.registry,
        ),
    )
    rows = spark.read.format("delta").load(predictions).select("event_id", "score").collect()
    scores = {r["event_id"]: r["score"] for r in rows if r["event_id"] in parity.probe_ids}
    return scores, summary.model_version


@pytest.mark.parametrize(("alias", "flavor"), [("champion", "sklearn"), ("challenger", "keras")])
def test_worker_scores_equal_batch_scores_for_every_probe(
    spark: Any,
    bootstrap: str,
    parity: ParityLake,
    topic_factory: Callable[..., str],
    consumer_group: str,
    table_path: Callable[[str], str],
    alias: str,
    flavor: str,
) -> None:
    reference = f"{MODEL}@{alias}"
    version = Registry(Path(parity.lake.registry)).resolve(reference)
    assert version.flavor == flavor

    topics = worker_topics(topic_factory)
    stream, stream_versions = _stream_scores(bootstrap, parity, topics, consumer_group, reference)
    batch, batch_version = _batch_scores(spark, parity, table_path("predictions"), reference)

    assert stream_versions == {version.version} == {batch_version}
    assert set(batch) == set(stream) == parity.probe_ids
    gaps = {event: abs(stream[event] - batch[event]) for event in parity.probe_ids}
    worst = sorted(gaps, key=gaps.__getitem__, reverse=True)[:5]
    detail = [(e, stream[e], batch[e]) for e in worst]
    assert gaps[worst[0]] <= TOLERANCE, f"stream vs batch scores differ: {detail}"
    assert len({round(score, 3) for score in stream.values()}) > 20, "scores should vary"
