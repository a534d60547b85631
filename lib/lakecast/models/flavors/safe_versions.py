"""The oldest releases of the loaders whose safety checks lakecast relies on.

skops before 0.13 and Keras before 3.12 had known ways around their own checks (skops's
trusted-type list, Keras's ``safe_mode``). pyproject.toml asks for these floors, but an
environment can be installed by other means: a loader refuses to run on an older release.
"""

from __future__ import annotations

import re
from importlib import metadata

from lakecast.errors import EnvironmentSetupError

MINIMUM_RELEASES: dict[str, tuple[int, ...]] = {"skops": (0, 13), "keras": (3, 12)}


def release(text: str) -> tuple[int, ...]:
    """``"0.13.0rc1"`` -> ``(0, 13, 0)``: the numeric release, without pre/post/local parts."""
    found = re.match(r"\d+(?:\.\d+)*", text.strip())
    if found is None:
        msg = f"cannot read a release number from version {text!r}"
        raise EnvironmentSetupError(msg)
    return tuple(int(part) for part in found.group().split("."))


def require_safe_release(package: str, installed: str | None = None) -> None:
    """Refuse to load artifacts with ``package`` older than its floor.

    Args:
        package: ``skops`` or ``keras``.
        installed: the installed version (default: read from the environment's metadata).

    Raises:
        EnvironmentSetupError: naming the installed version and the floor.
    """
    floor = MINIMUM_RELEASES[package]
    version = installed if installed is not None else metadata.version(package)
    # A pre-release of the floor (0.13.0rc1) has the floor's numbers and is let through.
    if release(version) < floor:
        wanted = ".".join(str(part) for part in floor)
        msg = (
            f"{package} {version} is installed; lakecast loads artifacts only with {package} "
            f">= {wanted}, whose checks have no known bypass (pip install '{package}>={wanted}')"
        )
        raise EnvironmentSetupError(msg)
