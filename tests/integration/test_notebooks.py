"""The notebooks of notebooks/, executed top to bottom by nbclient on a real kernel of this venv
against a small lake the test builds: no cell may fail, and every plot cell must show an image.

The lake: generated events over three days and their features, a champion and a second version
shadowing it (a recorded Shadow rollout), the predictions of a batch run under that rollout, and
the archived metrics topic of a short replay (samples, an anomaly, scaling up and down).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
MODEL = "purchase"


@pytest.fixture(scope="module")
def notebook_lake(spark: Any, kafka_broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lakecast.features.extract import extract_features
    from lakecast.models.training import GradientBoostingRecipe
    from lakecast.models.training_run import model_signature
    from lakecast.registry import Registry
    from lakecast.rollout.store import RolloutStore
    from lakecast.rollout.strategies import RolloutState, Shadow
    from lakecast.scoring.run import ScoringRequest, score_batch
    from lakecast.serving.archive import ArchiveTarget, start_archive
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
    return root


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
