"""`lakecast explain`: one event through the worker's path, against a real registry and snapshot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from lakecast.cli.main import app
from lakecast.errors import DataError
from lakecast.explain import explain_event, read_event_file
from lakecast.features.online import online_feature_matrix
from lakecast.features.snapshot import load_snapshot
from lakecast.features.spec import FEATURE_COLUMNS
from lakecast.models.training import GradientBoostingRecipe, MlpRecipe
from lakecast.registry import Registry, Signature
from lakecast.serving.decoding import decode_event_record, events_table
from lakecast.testing.events import event_value
from lakecast.testing.features import training_matrix
from lakecast.testing.models import served_lake

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """purchase@champion (logistic regression) plus a HistGradientBoosting (trees) and a
    Keras MLP version, all over the worker's feature values, and an entity snapshot."""
    paths = served_lake(tmp_path_factory.mktemp("explain"))
    matrix = training_matrix(600)
    rng = np.random.default_rng(5)
    standard = (matrix - matrix.mean(axis=0)) / (matrix.std(axis=0) + 1e-9)
    labels = (
        rng.random(600) < 1 / (1 + np.exp(-standard @ rng.standard_normal(matrix.shape[1])))
    ).astype(int)
    registry = Registry(paths["registry"])
    signature = Signature.of(list(FEATURE_COLUMNS), dtype="float64")
    trees = GradientBoostingRecipe(max_iter=20, min_samples_leaf=10).fit(matrix, labels)
    registry.register("trees", trees, flavor="sklearn", signature=signature)
    mlp = MlpRecipe(hidden=(16,), epochs=2).fit(matrix, labels)
    registry.register("mlp", mlp, flavor="keras", signature=signature)
    return paths


def _explain(lake: dict[str, str], model: str, event: dict[str, Any]) -> dict[str, Any]:
    return explain_event(
        orjson.dumps(event), model, registry_root=lake["registry"], entity_features=lake["snapshot"]
    )


def _worker_view(
    lake: dict[str, str], model: str, event: dict[str, Any]
) -> tuple[np.ndarray, float]:
    """The matrix and score the streaming worker computes for ``event`` (its own functions)."""
    table = events_table([decode_event_record(orjson.dumps(event))])
    matrix = online_feature_matrix(table, load_snapshot(lake["snapshot"]))
    _, predictor = Registry(lake["registry"]).load(model)
    return matrix[0], float(predictor.predict(matrix)[0])


@pytest.mark.parametrize("model", ["purchase@champion", "trees:1.0.0"])
def test_linear_and_tree_contributions_add_up_exactly_to_the_workers_score(
    lake: dict[str, str], model: str
) -> None:
    event = event_value(3)
    explained = _explain(lake, model, event)
    vector, score = _worker_view(lake, model, event)
    assert explained["event"] == event
    assert explained["validation"] == {"verdict": "accepted"}
    assert list(explained["input"]) == list(FEATURE_COLUMNS)
    assert np.array_equal(np.array(list(explained["input"].values())), vector)
    assert explained["score"] == score
    transforms = {t["name"].split()[0]: t for t in explained["transforms"]}
    assert transforms["event_features"]["inputs"]["price"] == event["price"]
    assert transforms["event_features"]["output"]["log_price"] == math.log1p(event["price"])
    assert (
        transforms["entity_features"]["output"]["product_views_7d"]
        == explained["input"]["product_views_7d"]
    )
    snapshot = load_snapshot(lake["snapshot"])
    assert explained["snapshot"]["table_version"] == snapshot.table_version
    assert explained["snapshot"]["snapshot_date"] == str(snapshot.snapshot_date)
    found = explained["contributions"]
    assert found["space"] == "log_odds"
    assert found["bias"] + sum(found["features"].values()) == pytest.approx(
        found["output"], abs=1e-9
    )
    assert 1 / (1 + math.exp(-found["output"])) == pytest.approx(score, abs=1e-12)
    ranked = [abs(v) for v in found["features"].values()]
    assert ranked == sorted(ranked, reverse=True)


def test_tree_contributions_credit_only_the_features_on_the_path(lake: dict[str, str]) -> None:
    _, predictor = Registry(lake["registry"]).load("trees:1.0.0")
    model: Any = getattr(predictor, "model")  # noqa: B009
    used = {
        int(f)
        for (tree,) in model._predictors
        for f in tree.nodes["feature_idx"][~tree.nodes["is_leaf"].astype(bool)]
    }
    found = _explain(lake, "trees:1.0.0", event_value(11))["contributions"]
    assert found["trees"] == 20
    unused = [FEATURE_COLUMNS[i] for i in range(len(FEATURE_COLUMNS)) if i not in used]
    assert unused and all(found["features"][name] == 0.0 for name in unused)


def test_keras_integrated_gradients_come_close_to_the_score(lake: dict[str, str]) -> None:
    event = event_value(7)
    explained = _explain(lake, "mlp:1.0.0", event)
    _, score = _worker_view(lake, "mlp:1.0.0", event)
    found = explained["contributions"]
    assert explained["score"] == pytest.approx(score, abs=1e-7)
    assert found["space"] == "probability"
    assert found["method"].startswith("integrated gradients")
    # bias is the score at the training means; the residual is what the approximation missed.
    assert found["bias"] + sum(found["features"].values()) + found["residual"] == pytest.approx(
        score, abs=1e-6
    )
    assert abs(found["residual"]) < 0.02 * max(abs(score - found["bias"]), 0.01) + 1e-3
    matrix = training_matrix(600)
    assert found["baseline"]["log_price"] == pytest.approx(
        matrix[:, FEATURE_COLUMNS.index("log_price")].mean(), rel=1e-5
    )


def test_a_rejected_event_stops_at_the_verdict_and_the_cli_exits_1(
    lake: dict[str, str], tmp_path: Path
) -> None:
    event = {k: v for k, v in event_value(4).items() if k != "ts"}
    explained = _explain(lake, "purchase@champion", event)
    assert explained["validation"]["verdict"] == "rejected"
    assert explained["validation"]["kind"] == "missing_field"
    assert "'ts'" in explained["validation"]["message"]
    assert "score" not in explained
    file = tmp_path / "event.json"
    file.write_bytes(orjson.dumps(event))
    args = ["explain", "--model", "purchase@champion", str(file), "--registry", lake["registry"],
            "--entity-features", lake["snapshot"]]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert '"verdict": "rejected"' in result.output
    file.write_bytes(orjson.dumps(event_value(4)))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0
    printed = orjson.loads(result.output)
    assert printed["score"] == _worker_view(lake, "purchase@champion", event_value(4))[1]


def test_a_bad_event_file_is_one_error_naming_the_file_and_where(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"event_id": "e-1",\n  "price": }\n')
    with pytest.raises(
        DataError, match=r"event file .*broken.json: not valid JSON at line 2 column"
    ):
        read_event_file(broken)
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(DataError, match="expected one JSON object, found list"):
        read_event_file(listed)
    with pytest.raises(DataError, match=r"nosuch\.json: cannot read it"):
        read_event_file(tmp_path / "nosuch.json")
