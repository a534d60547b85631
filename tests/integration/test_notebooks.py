"""The notebooks of notebooks/, executed top to bottom by nbclient on a real kernel of this venv
against a small lake the test builds: no cell may fail, and every plot cell must show an image.

The lake: generated events over three days and their features, a champion and a second version
shadowing it (a recorded Shadow rollout), the predictions of a batch run under that rollout, the
archived metrics topic of a short replay (samples, an anomaly, scaling up and down), and the
model-quality loop's tables: ``model_quality`` of the three days (both versions) and one drift
run of the champion over the archived served-feature sample of the second day, whose first
feature is shifted (:mod:`lakecast.testing.daily`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
MODEL = "purchase"
SHOWN: dict[str, list[str]] = {}  # notebook stem -> text its outputs must hold (set by the lake)


@pytest.fixture(scope="module")
def notebook_lake(spark: Any, kafka_broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lakecast.features.extract import extract_features
    from lakecast.lake.archive import ArchiveTarget, start_archive
    from lakecast.models.training import GradientBoostingRecipe
    from lakecast.models.training_run import model_signature
    from lakecast.registry import Registry
    from lakecast.rollout.store import RolloutStore
    from lakecast.rollout.strategies import RolloutState, Shadow
    from lakecast.scoring.run import ScoringRequest, score_batch
    from lakecast.testing.daily import small_lake
    from lakecast.testing.features import synthetic_feature_matrix

    root = tmp_path_factory.mktemp("notebooks") / "lake"
    lake = small_lake(spark, root, kafka_broker.bootstrap_servers)
    extract_features(
        spark,
        events_path=lake.events,
        features_path=str(root / "features"),
        entity_features_path=str(root / "entity_features"),
        run_date=None,
    )
    registry = Registry(lake.registry)
    x, y = synthetic_feature_matrix(1500, seed=9)
    second = registry.register(
        MODEL,
        GradientBoostingRecipe(max_iter=10, seed=3).fit(x, y),
        flavor="sklearn",
        signature=model_signature(),
    )
    spec = Shadow(
        id="notebook-shadow",
        champion=f"{MODEL}:{lake.model_version}",
        shadows=(f"{MODEL}:{second.version}",),
        shadow_percent=50,
    )
    RolloutStore(lake.registry).start(RolloutState(model=MODEL, spec=spec), who="test")
    score_batch(
        spark,
        ScoringRequest(
            model=MODEL,
            features_path=str(root / "features"),
            predictions_path=str(root / "predictions"),
            registry_root=lake.registry,
        ),
    )
    target = ArchiveTarget(
        "metrics", lake.metrics_topic, str(root / "archive" / "metrics"), str(root / "_cp")
    )
    start_archive(spark, lake.bootstrap, target, available_now=True).awaitTermination(300)
    _quality_loop_tables(spark, root, lake)
    return root


def _quality_loop_tables(spark: Any, root: Path, lake: Any) -> None:
    """``model_quality`` of the three days and a drift run over the served-feature sample."""
    from datetime import UTC, datetime, timedelta

    from lakecast.config import DriftSettings
    from lakecast.features.spec import FEATURE_COLUMNS
    from lakecast.lake.archive import ArchiveTarget, start_archive
    from lakecast.lake.tables import FEATURE_DRIFT, MODEL_QUALITY, SERVED_FEATURES_ARCHIVE
    from lakecast.monitoring.drift.job import DriftRequest, run_feature_drift
    from lakecast.quality.evaluate import QualityRequest, evaluate_quality
    from lakecast.testing.daily import START

    served = str(root / SERVED_FEATURES_ARCHIVE)
    target = ArchiveTarget(
        "served_features", lake.served_features_topic, served, str(root / "_cps")
    )
    start_archive(spark, lake.bootstrap, target, available_now=True).awaitTermination(300)
    quality = evaluate_quality(
        spark,
        QualityRequest(
            events_path=lake.events,
            quality_path=str(root / MODEL_QUALITY),
            registry_root=lake.registry,
            predictions_path=str(root / "predictions"),
            first_day=START,
            last_day=START + timedelta(days=2),
        ),
    )
    day = datetime(START.year, START.month, START.day, tzinfo=UTC) + timedelta(days=1)
    drift = run_feature_drift(
        spark,
        DriftRequest(
            model=f"{MODEL}:{lake.model_version}",
            registry_root=lake.registry,
            served_features=served,
            drift_table=str(root / FEATURE_DRIFT),
            start=day,
            end=day + timedelta(days=1),
        ),
        DriftSettings(),
    )
    assert [d.feature for d in drift.drift if d.drifted] == [FEATURE_COLUMNS[0]]
    SHOWN["03_batch_scores_and_rollouts"] = [f"{len(quality.records)} model_quality rows"]
    SHOWN["04_stream_metrics_anomalies_scaling"] = [
        f"drifted: [('{lake.model_version}', '{FEATURE_COLUMNS[0]}')]",
        "entity snapshot age: ",
    ]


def _with_parameters(notebook: Any, values: dict[str, Any]) -> Any:
    """Papermill's injection: a cell after the ``parameters`` cell that overrides its values."""
    index = next(
        i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])
    )
    source = "\n".join(f"{name} = {value!r}" for name, value in values.items())
    injected = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    notebook.cells.insert(index + 1, injected)
    return notebook


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_the_notebook_runs_and_every_plot_cell_shows_an_image(
    path: Path, notebook_lake: Path, tmp_path: Path
) -> None:
    notebook = _with_parameters(
        nbformat.read(path, as_version=4),
        {"LAKE_ROOT": str(notebook_lake), "MODEL": MODEL, "KERAS_EPOCHS": 1},
    )
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=600,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    plots = [c for c in notebook.cells if "plot" in c.metadata.get("tags", [])]
    assert plots
    for cell in plots:
        images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert images, f"{path.name}: plot cell without an image:\n{cell.source[:200]}"
    printed = "".join(
        o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs
    )
    for text in SHOWN.get(path.stem, []):
        assert text in printed, f"{path.name}: the outputs do not show {text!r}"
