"""Optimised (ONNX) versions served by every path, on a real Spark + Delta and a real broker:
``score_batch`` (the direct read and Spark's read through mapInArrow) and the streaming worker
give the source version's scores, within the tolerance of the version's kind (exact for
``onnx``, the reduced-precision bound for the Keras model's ``onnx-int8`` and the tree
model's ``onnx-fp32``, whose float32 features both reads build)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from deltalake import DeltaTable

from lakecast.features.online import online_feature_matrix
from lakecast.features.snapshot import load_snapshot
from lakecast.features.spec import FEATURE_COLUMNS
from lakecast.kafka.serde import decode_prediction
from lakecast.models.optimize import optimize_version
from lakecast.registry import ModelVersion, Registry
from lakecast.scoring.run import ScoringRequest, score_batch
from lakecast.testing.events import event_value, make_events
from lakecast.testing.features import write_snapshot
from lakecast.testing.kafka import produce, read_committed
from lakecast.testing.models import register_with_holdout, write_features_table
from tests.integration.worker_fixtures import ThreadedWorker, drain, worker_topics

# optimization.exact_tolerance and reduced_precision_tolerance (conf/lakecast.yaml)
TOLERANCE = {"onnx": 1e-6, "onnx-int8": 0.05, "onnx-fp32": 0.05}
SERVED = [("sklearn", "onnx"), ("sklearn", "onnx-fp32"), ("keras", "onnx"), ("keras", "onnx-int8")]


class OptimizedLake:
    """A features table, an entity snapshot, and a registry with both flavors and their
    optimised versions: ``optimized[flavor, kind]`` is (source, optimised)."""

    def __init__(self, root: Path) -> None:
        self.features = str(root / "features")
        self.snapshot = str(root / "entity_features")
        self.registry = str(root / "registry")
        write_features_table(self.features, rows=1_500, online=True)
        write_snapshot(self.snapshot)
        registry = Registry(self.registry)
        self.optimized: dict[tuple[str, str], tuple[ModelVersion, ModelVersion]] = {}
        for flavor in ("sklearn", "keras"):
            source = register_with_holdout(registry, self.features, flavor)  # type: ignore[arg-type]
            for served, kind in SERVED:
                if served == flavor:
                    record = optimize_version(registry, source.ref, kind).record
                    self.optimized[flavor, kind] = (source, record)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> OptimizedLake:
    return OptimizedLake(tmp_path_factory.mktemp("optimized"))


@pytest.mark.parametrize(
    ("flavor", "kind", "read"),
    [
        ("sklearn", "onnx", "direct"),
        ("sklearn", "onnx-fp32", "direct"),
        ("sklearn", "onnx-fp32", "spark"),
        ("keras", "onnx", "spark"),
        ("keras", "onnx-int8", "direct"),
    ],
)
def test_score_batch_with_the_optimised_version_gives_the_source_scores(
    spark: Any, lake: OptimizedLake, tmp_path: Path, flavor: str, kind: str, read: str
) -> None:
    source, optimized = lake.optimized[flavor, kind]
    predictions = str(tmp_path / "predictions")
    summary = score_batch(
        spark,
        ScoringRequest(
            model=optimized.ref,
            features_path=lake.features,
            predictions_path=predictions,
            registry_root=lake.registry,
            batch_size=400,
            read=read,  # type: ignore[arg-type]
        ),
    )
    assert summary.model_version == optimized.version
    assert summary.model_sha256 == optimized.sha256
    table = DeltaTable(lake.features).to_pyarrow_table()
    matrix = np.column_stack([table.column(c).to_numpy() for c in FEATURE_COLUMNS])
    _, predictor = Registry(lake.registry).load(source.ref)
    expected = dict(
        zip(table.column("event_id").to_pylist(), predictor.predict(matrix), strict=True)
    )
    written = DeltaTable(predictions).to_pyarrow_table(
        columns=["event_id", "score", "model_version"]
    )
    assert written.num_rows == table.num_rows == summary.rows_scored
    assert set(written.column("model_version").to_pylist()) == {optimized.version}
    scores = dict(
        zip(
            written.column("event_id").to_pylist(), written.column("score").to_pylist(), strict=True
        )
    )
    assert max(abs(scores[e] - expected[e]) for e in expected) <= TOLERANCE[kind]


@pytest.mark.parametrize(("flavor", "kind"), SERVED)
def test_the_worker_serves_the_optimised_version_with_the_source_scores(
    bootstrap: str,
    lake: OptimizedLake,
    topic_factory: Callable[..., str],
    consumer_group: str,
    flavor: str,
    kind: str,
) -> None:
    source, optimized = lake.optimized[flavor, kind]
    topics = worker_topics(topic_factory)
    values = [event_value(i) for i in range(300)]
    produce(bootstrap, topics["events"], ((v["user_id"].encode(), orjson.dumps(v)) for v in values))
    worker = ThreadedWorker(bootstrap, lake, topics, consumer_group, reference=optimized.ref)
    try:
        drain(bootstrap, consumer_group, topics["events"], len(values), worker)
    finally:
        worker.stop()

    predictions = [
        decode_prediction(r.value)
        for r in read_committed(bootstrap, topics["predictions"], at_least=len(values))
    ]
    assert sorted(p.event_id for p in predictions) == sorted(v["event_id"] for v in values)
    assert {(p.model.version, p.model.sha256) for p in predictions} == {
        (optimized.version, optimized.sha256)
    }
    rows = [{**v, "ts": datetime.fromisoformat(v["ts"])} for v in values]
    matrix = online_feature_matrix(make_events(rows), load_snapshot(lake.snapshot))
    _, predictor = Registry(lake.registry).load(source.ref)
    expected = dict(zip((v["event_id"] for v in values), predictor.predict(matrix), strict=True))
    got = {p.event_id: p.score for p in predictions}
    assert max(abs(got[e] - expected[e]) for e in expected) <= TOLERANCE[kind]
    assert len({round(s, 4) for s in got.values()}) > 5, "scores should vary across events"
