"""A tampered ``versions`` row cannot point the loader outside the registry root."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from deltalake import DeltaTable
from sklearn.linear_model import LogisticRegression

from lakecast.errors import ModelIntegrityError
from lakecast.models import load_model
from lakecast.registry import Registry, Signature
from lakecast.registry.artifacts import stored_artifact_path

SIG = Signature.of(["a", "b"])


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    x = np.random.default_rng(0).normal(size=(40, 2))
    registry = Registry(tmp_path / "registry")
    registry.register("m", LogisticRegression().fit(x, (x[:, 0] > 0).astype(int)), signature=SIG)
    return registry


def _tamper(registry: Registry, stored: str) -> None:
    """Rewrite the row as someone with write access to the table could."""
    table = DeltaTable(registry.tables.uri("versions"))
    table.update(new_values={"artifact_path": stored}, predicate="name = 'm'")


@pytest.mark.parametrize(
    ("stored", "problem"),
    [
        ("/etc/passwd", "is absolute"),
        ("\\\\host\\share\\model.skops", "is absolute"),
        ("C:\\models\\model.skops", "is absolute"),
        ("file:///etc/passwd", "is absolute"),
        ("../../x", r"climbs out of the registry root .* \('\.\.'\)"),
        ("artifacts/../../../../etc/passwd", "climbs out"),
        ("artifacts\\..\\..\\x", "climbs out"),
        ("", "is empty"),
    ],
)
def test_a_stored_path_outside_the_root_is_refused_on_read(
    registry: Registry, stored: str, problem: str
) -> None:
    good = registry.resolve("m:1.0.0")
    _tamper(registry, stored)
    # The row's path is refused when the row is read, before any file is opened.
    fresh = Registry(registry.root)
    with pytest.raises(ModelIntegrityError, match=rf"model 'm' version 1.0.0: .*{problem}"):
        fresh.load("m:1.0.0")
    with pytest.raises(ModelIntegrityError, match="artifact_path"):
        fresh.resolve("m")
    assert load_model(good).predict(np.zeros((1, 2))).shape == (1,)


def test_a_stored_path_under_the_root_is_kept(registry: Registry) -> None:
    record = registry.resolve("m:1.0.0")
    root = registry.artifacts.root
    assert Path(record.artifact_path).is_relative_to(root)
    relative = Path(record.artifact_path).relative_to(root).as_posix()
    assert stored_artifact_path(root, relative, "m", "1.0.0") == root / relative
    # A name that merely contains dots is not a parent reference.
    assert stored_artifact_path(root, "artifacts/ab/model..v2.skops", "m", "1") == (
        root / "artifacts/ab/model..v2.skops"
    )
