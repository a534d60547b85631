"""The dashboard shows the model-quality loop: quality, drift, model age and non-finite scores
(the gauge names of issue 18's contract), with drift lines at the configured thresholds."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from lakecast.config import DriftSettings

pytestmark = pytest.mark.unit

DASHBOARD = Path(__file__).resolve().parents[2] / "conf" / "grafana" / "lakecast-streaming.json"
CONTRACT = {
    "lakecast_model_quality": {"model", "version", "variant", "metric"},
    "lakecast_feature_drift": {"model", "version", "feature", "statistic"},
    "lakecast_model_age_seconds": {"model", "version", "alias"},
    "lakecast_nonfinite_scores_total": {"model", "version"},
}


def _panels() -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = json.loads(DASHBOARD.read_text())["panels"]
    return panels


def test_each_contract_gauge_has_a_panel_whose_labels_exist() -> None:
    for metric, labels in CONTRACT.items():
        targets = [t for p in _panels() for t in p["targets"] if metric in t["expr"]]
        assert targets, f"no panel queries {metric}"
        for target in targets:
            used = set(re.findall(r"\{\{(\w+)\}\}", target["legendFormat"]))
            used |= set(re.findall(r"(\w+)=~?\"", target["expr"]))
            for group in re.findall(r"by \(([^)]*)\)", target["expr"]):
                used |= {label.strip() for label in group.split(",")}
            assert used and used <= labels, (metric, sorted(used - labels))


def test_panel_ids_and_places_are_unique() -> None:
    ids = [p["id"] for p in _panels()]
    assert len(ids) == len(set(ids))
    cells = set()
    for panel in _panels():
        pos = panel["gridPos"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"panel {panel['id']} overlaps another"
                cells.add((x, y))


def test_drift_panels_draw_the_configured_thresholds() -> None:
    defaults = DriftSettings()
    lines = {}
    for panel in _panels():
        expr = " ".join(t["expr"] for t in panel["targets"])
        for statistic in ("psi", "ks"):
            if f'lakecast_feature_drift{{statistic="{statistic}"}}' == expr:
                steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
                lines[statistic] = steps[-1]["value"]
    assert lines == {"psi": defaults.psi_threshold, "ks": defaults.ks_threshold}
