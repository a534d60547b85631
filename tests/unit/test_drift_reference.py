"""The drift job's reference is the training set the registry's lineage names, an optimised
version's being its source's; a version without one is refused by name."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from lakecast.errors import DataError
from lakecast.features.spec import FEATURE_COLUMNS
from lakecast.models.training_run import model_signature
from lakecast.monitoring.drift.job import training_reference
from lakecast.registry import Lineage, Registry

pytestmark = pytest.mark.unit

HOLDOUT = {"train_from": "2026-01-01", "train_to": "2026-01-06", "holdout_from": "2026-01-07"}


def test_the_lineage_names_the_training_set_through_optimised_versions(tmp_path: Path) -> None:
    registry = Registry(str(tmp_path / "registry"))
    lineage = Lineage(training_table="lake/features", training_table_version=4, holdout=HOLDOUT)
    rows = np.random.default_rng(0).random((40, len(FEATURE_COLUMNS)))
    model = LogisticRegression().fit(rows, np.arange(40) % 2)
    trained = registry.register("purchase", model, signature=model_signature(), lineage=lineage)
    # An optimised version's record (registering one would only repeat the registry's tests):
    # the stored source is what its lineage leads to.
    optimised = dataclasses.replace(
        trained, version="1.1.0", lineage=Lineage(optimized_from=f"purchase:{trained.version}")
    )
    reference = training_reference(registry, optimised)
    assert (reference.table, reference.table_version) == ("lake/features", 4)
    assert reference.trained_version == trained.version
    assert (reference.train_from, reference.train_to) == (dt.date(2026, 1, 1), dt.date(2026, 1, 6))

    untracked = dataclasses.replace(trained, version="1.2.0", lineage=Lineage())
    with pytest.raises(DataError, match=r"model purchase:1\.2\.0 has no training table"):
        training_reference(registry, untracked)
