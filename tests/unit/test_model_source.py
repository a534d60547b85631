"""ModelSource re-resolves its alias only when the registry was written since the last poll."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakecast.registry import Registry
from lakecast.registry.records import ModelVersion
from lakecast.serving.model_source import ModelSource
from lakecast.testing.models import register_model


@pytest.fixture
def root(tmp_path: Path) -> str:
    return str(tmp_path / "registry")


def test_revision_changes_with_each_version_or_alias_written(root: str) -> None:
    registry = Registry(root)
    assert registry.revision() == (None, None)
    first = register_model(root, alias=None)
    registered = registry.revision()
    assert registered[0] is not None and registered != (None, None)
    assert registry.revision() == registered  # nothing written: the same
    registry.promote("purchase", first.version, "champion", why="test")
    promoted = registry.revision()
    assert promoted[0] == registered[0] and promoted[1] != registered[1]


def test_refresh_resolves_only_after_a_write_and_follows_the_alias(
    root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = register_model(root, seed=0)
    registry = Registry(root)
    resolved: list[str] = []
    resolve = registry.resolve

    def counting(reference: str) -> ModelVersion:
        resolved.append(reference)
        return resolve(reference)

    monkeypatch.setattr(registry, "resolve", counting)
    source = ModelSource(registry, "purchase@champion")
    assert source.refresh().version.version == first.version
    assert len(resolved) == 1
    for _ in range(3):
        assert source.refresh().version.version == first.version
    assert len(resolved) == 1  # the registry did not change: no resolve

    second = register_model(root, seed=1)  # registered and promoted to champion
    assert second.version != first.version
    assert source.current().version.version == first.version
    assert source.refresh().version.version == second.version
    assert source.current().version.version == second.version
    assert source.switches == 1
    assert len(resolved) == 2
