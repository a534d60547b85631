"""The library versions a model was trained with, and how the running process differs.

A version's lineage records them (``Lineage.libraries``) when it is made. Loading it under
another MAJOR or MINOR version of one of them logs a warning and counts
``lakecast_model_library_mismatch_total``: a skops or ``.keras`` file usually loads across
minor versions, but scikit-learn and Keras do not promise the same predictions, so the
operator should know. Patch releases are not reported. A version registered before lineage
kept the libraries says ``unknown`` and never fails.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Literal

from prometheus_client import Counter

if TYPE_CHECKING:
    from lakecast.registry.records import ModelVersion

log = logging.getLogger(__name__)

# The distributions whose versions decide what a model computes (python is the interpreter).
LIBRARIES = ("python", "scikit-learn", "keras", "tensorflow", "numpy", "lakecast")
NOT_INSTALLED = "not installed"
UNKNOWN = "unknown"

LIBRARY_MISMATCHES = Counter(
    "lakecast_model_library_mismatch_total",
    "Model loads under another major.minor version of a library than it was trained with.",
    ["model", "version", "library"],
)


def library_versions() -> dict[str, str]:
    """The versions of :data:`LIBRARIES` in this process (read from metadata, nothing imported)."""
    found = {"python": platform.python_version()}
    for name in LIBRARIES[1:]:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = NOT_INSTALLED
    return found


def _major_minor(text: str) -> tuple[str, ...]:
    return tuple(text.split("+")[0].split(".")[:2])


Status = Literal["same", "differs", "unknown"]


@dataclass(frozen=True)
class LibraryCheck:
    """One library: the version trained with, the one here, and whether major.minor match."""

    library: str
    trained: str
    running: str
    status: Status

    def describe(self) -> str:
        if self.status == "same":
            return f"{self.library} {self.running}"
        if self.status == "unknown":
            return f"{self.library} trained with {UNKNOWN}, {self.running} here"
        return f"{self.library} trained with {self.trained}, {self.running} here"


def compare_libraries(
    trained: Mapping[str, str], running: Mapping[str, str] | None = None
) -> list[LibraryCheck]:
    """Each of :data:`LIBRARIES`, trained against running; a library not recorded is unknown."""
    here = library_versions() if running is None else running
    checks = []
    for name in LIBRARIES:
        was, now = trained.get(name), here.get(name, NOT_INSTALLED)
        status: Status
        if was is None:
            status = "unknown"
        elif was == now or (
            NOT_INSTALLED not in (was, now) and _major_minor(was) == _major_minor(now)
        ):
            status = "same"
        else:
            status = "differs"
        checks.append(LibraryCheck(name, was or UNKNOWN, now, status))
    return checks


def describe_libraries(checks: list[LibraryCheck]) -> str:
    """One line: the differing libraries, or that all match, or that nothing was recorded."""
    if all(c.status == "unknown" for c in checks):
        return "libraries: unknown (not recorded when this version was registered)"
    differing = [c.describe() for c in checks if c.status == "differs"]
    if differing:
        return "libraries DIFFER: " + "; ".join(differing)
    return "libraries: same major.minor as trained"


def check_loaded_libraries(record: ModelVersion) -> list[LibraryCheck]:
    """Warn (log and metric) about each library whose major.minor differs from training."""
    checks = compare_libraries(record.lineage.libraries)
    for check in checks:
        if check.status == "differs":
            LIBRARY_MISMATCHES.labels(record.name, record.version, check.library).inc()
            log.warning(
                "model %s: %s (a major or minor version change may change its scores)",
                record.ref,
                check.describe(),
            )
    return checks
