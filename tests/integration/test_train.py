"""Training on the real pipeline: synthetic events -> features -> both flavors, registered.

The events carry the generator's planted purchase signal; the holdout is the last date.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lakecast.features.spec import FEATURE_COLUMNS, LABEL_COLUMN
from lakecast.models.evaluation import evaluate
from lakecast.models.training import (
    GradientBoostingRecipe,
    MlpRecipe,
    time_holdout_split,
    training_rows,
)
from lakecast.models.training_run import (
    TrainingRequest,
    predict_scores,
    read_training_table,
    train_and_register,
)
from lakecast.registry import Registry, card_is_complete
from lakecast.registry.environment import LIBRARIES
from lakecast.registry.records import current_git_commit
from tests.integration.lake_fixtures import generated_lake

EVENTS, DAYS, START = 24_000, 4, dt.date(2026, 2, 2)


@pytest.fixture(scope="module")
def features(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    from lakecast.data.clickstream import ClickstreamRun

    lake, _ = generated_lake(
        spark, tmp_path_factory.mktemp("train"), ClickstreamRun(EVENTS, DAYS, 5, START)
    )
    return lake.features


@pytest.fixture(scope="module")
def trained(spark: Any, features: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    registry_root = tmp_path_factory.mktemp("registry")
    request = TrainingRequest(
        features_path=features,
        registry_root=str(registry_root),
        gradient_boosting=GradientBoostingRecipe(max_iter=60, seed=42),
        mlp=MlpRecipe(epochs=4, seed=42),
    )
    return request, train_and_register(spark, request)


def test_both_flavors_are_registered_with_metrics_lineage_and_card(
    spark: Any, features: str, trained: Any
) -> None:
    from lakecast.lake.delta import table_version

    request, summary = trained
    registry = Registry(request.registry_root)
    champion = registry.resolve(f"{request.model_name}@champion")
    challenger = registry.resolve(f"{request.model_name}@challenger")
    assert (champion.flavor, champion.version) == ("sklearn", "1.0.0")
    assert (challenger.flavor, challenger.version) == ("keras", "1.1.0")
    assert summary.features_table_version == table_version(spark, features)
    for record in (champion, challenger):
        # The planted signal must be learnt: well above chance on the held-out last day.
        assert record.metrics["holdout_roc_auc"] > 0.7
        assert 0.0 < record.metrics["holdout_log_loss"] < 0.69
        assert 0.0 <= record.metrics["holdout_ece"] < 0.1
        assert record.lineage.training_table == features
        assert record.lineage.training_table_version == summary.features_table_version
        assert record.lineage.git_commit == current_git_commit()
        assert record.lineage.parameters["seed"] == request.seed
        assert (
            record.lineage.holdout["holdout_from"] == (START + dt.timedelta(DAYS - 1)).isoformat()
        )
        assert card_is_complete(record.card), record.card.missing_sections()
        assert f"{record.metrics['holdout_roc_auc']:.4f}" in record.card.evaluation_data
        assert record.signature.input_names == list(FEATURE_COLUMNS)
        assert set(record.lineage.libraries) == set(LIBRARIES)
        assert "non-inferiority margin" in record.card.metrics
    # The first champion went through the gates (card and the min_holdout bar).
    gates = {v.alias: v.gates for v in summary.versions}
    assert gates["champion"] == "model_card_complete pass; holdout_minimum pass"
    aucs = [r.metrics["holdout_roc_auc"] for r in (champion, challenger)]
    print(f"holdout ROC AUC: sklearn {aucs[0]:.4f}, keras {aucs[1]:.4f}")


def test_registered_artifacts_reproduce_the_recorded_holdout_metrics(
    spark: Any, features: str, trained: Any
) -> None:
    request, summary = trained
    table, _ = read_training_table(spark, features, summary.features_table_version)
    split = time_holdout_split(training_rows(table, FEATURE_COLUMNS, LABEL_COLUMN), 1)
    registry = Registry(request.registry_root)
    for alias in ("champion", "challenger"):
        record, predictor = registry.load(f"{request.model_name}@{alias}")
        metrics = evaluate(split.holdout.labels, predictor.predict(split.holdout.features))
        assert metrics.roc_auc == pytest.approx(record.metrics["holdout_roc_auc"], abs=1e-6)
        assert metrics.rows == int(record.metrics["holdout_rows"])


def test_holdout_is_the_last_dates_and_recipes_are_deterministic_by_seed(
    spark: Any, features: str
) -> None:
    table, _ = read_training_table(spark, features, None)
    split = time_holdout_split(training_rows(table, FEATURE_COLUMNS, LABEL_COLUMN), 1)
    assert split.train.dates.max() < split.holdout.dates.min()
    assert split.holdout_from == START + dt.timedelta(DAYS - 1)
    x, y = split.train.features[:4000], split.train.labels[:4000]  # enough to tell seeds apart
    for make in (
        lambda seed: GradientBoostingRecipe(max_iter=20, seed=seed),
        lambda seed: MlpRecipe(hidden=(16,), epochs=2, seed=seed),
    ):
        flavor = "sklearn" if isinstance(make(0), GradientBoostingRecipe) else "keras"
        first = predict_scores(make(3).fit(x, y), flavor, split.holdout)
        again = predict_scores(make(3).fit(x, y), flavor, split.holdout)
        other = predict_scores(make(4).fit(x, y), flavor, split.holdout)
        np.testing.assert_array_equal(first, again)
        assert not np.array_equal(first, other)


def test_a_features_table_without_labels_is_refused(spark: Any, tmp_path: Path) -> None:
    from lakecast.errors import SchemaError

    path = str(tmp_path / "not_features")
    spark.range(5).write.format("delta").save(path)
    with pytest.raises(SchemaError, match=LABEL_COLUMN):
        train_and_register(
            spark, TrainingRequest(features_path=path, registry_root=str(tmp_path / "reg"))
        )
