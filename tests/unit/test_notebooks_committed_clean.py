"""The committed notebooks carry no outputs and take their parameters in a first tagged cell
(papermill's convention), so a scheduler can run them as reports; each plot cell is tagged."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_the_four_notebooks_are_there() -> None:
    assert [path.stem for path in NOTEBOOKS] == [
        "01_explore_events_and_features",
        "02_train_compare_register",
        "03_batch_scores_and_rollouts",
        "04_stream_metrics_anomalies_scaling",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_a_committed_notebook_is_stripped_and_parameterised(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    with_outputs = [i for i, cell in enumerate(code) if cell.outputs or cell.execution_count]
    assert with_outputs == [], f"{path.name}: code cells {with_outputs} hold outputs"
    assert "parameters" in code[0].metadata.get("tags", [])
    assert sum("parameters" in cell.metadata.get("tags", []) for cell in code) == 1
    for cell in code:
        if "plt.show()" in cell.source:
            assert "plot" in cell.metadata.get("tags", []), cell.source[:80]
    assert any("plot" in cell.metadata.get("tags", []) for cell in code)
