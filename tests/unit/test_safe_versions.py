"""The loader floors: pyproject asks for them, the installed releases meet them, and an older
release is refused before any artifact is read."""

from __future__ import annotations

import tomllib
from importlib import metadata

import pytest

from lakecast.config import PROJECT_ROOT
from lakecast.errors import EnvironmentSetupError
from lakecast.models.flavors import keras_flavor, sklearn_flavor
from lakecast.models.flavors.safe_versions import (
    MINIMUM_RELEASES,
    release,
    require_safe_release,
)


def test_pyproject_asks_for_the_floors_and_the_environment_meets_them() -> None:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    requirements = project["project"]["dependencies"]
    for package, floor in MINIMUM_RELEASES.items():
        wanted = ".".join(str(part) for part in floor)
        assert any(r.replace(" ", "").startswith(f"{package}>={wanted}") for r in requirements)
        assert release(metadata.version(package)) >= floor
        require_safe_release(package)


@pytest.mark.parametrize(
    ("package", "installed", "refused"),
    [
        ("skops", "0.12.9", True),
        ("skops", "0.13.0rc1", False),
        ("skops", "0.16.0", False),
        ("keras", "3.11.3", True),
        ("keras", "3.12.0", False),
        ("keras", "2.15.0", True),
    ],
)
def test_an_older_release_is_refused_by_name(package: str, installed: str, refused: bool) -> None:
    if refused:
        with pytest.raises(EnvironmentSetupError, match=rf"{package} {installed} is installed"):
            require_safe_release(package, installed)
    else:
        require_safe_release(package, installed)


def test_the_skops_loader_checks_before_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    real = metadata.version
    monkeypatch.setattr(
        metadata, "version", lambda name: "0.12.0" if name == "skops" else real(name)
    )
    with pytest.raises(EnvironmentSetupError, match=r"skops 0.12.0 is installed.*>= 0.13"):
        sklearn_flavor.load(b"not even a zip", "model 'm'", sha256_verified=True, width=3)


def test_the_keras_loader_checks_before_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    real = metadata.version
    monkeypatch.setattr(
        metadata, "version", lambda name: "3.11.3" if name == "keras" else real(name)
    )
    with pytest.raises(EnvironmentSetupError, match=r"keras 3.11.3 is installed.*>= 3.12"):
        keras_flavor.load(b"not even a zip", "model 'm'")
