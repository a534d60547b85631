"""Semantic versions of registered models, and the rule that ties a bump to a change.

MAJOR: the input or output signature changed incompatibly. MINOR: retrained, same signature
(a new artifact). PATCH: metadata or card only (same artifact, same signature). A version may
always bump more than it must, never less.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from lakecast.errors import RegistryError

BumpKind = Literal["major", "minor", "patch"]
BUMP_ORDER: dict[BumpKind, int] = {"patch": 0, "minor": 1, "major": 2}
FIRST_VERSION = "1.0.0"

_PATTERN = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


@dataclass(frozen=True, order=True)
class SemVer:
    """MAJOR.MINOR.PATCH, ordered numerically (1.10.0 > 1.9.0)."""

    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> SemVer:
        """Parse ``"1.2.3"``; anything else (``v1.2``, ``1.2``, ``01.2.3``) is refused."""
        match = _PATTERN.match(text.strip())
        if not match:
            msg = f"version {text!r} is not MAJOR.MINOR.PATCH (for example 1.2.0)"
            raise RegistryError(msg)
        major, minor, patch = (int(part) for part in match.groups())
        return cls(major, minor, patch)

    def bump(self, kind: BumpKind) -> SemVer:
        """The next version for a change of that kind."""
        if kind == "major":
            return SemVer(self.major + 1, 0, 0)
        if kind == "minor":
            return SemVer(self.major, self.minor + 1, 0)
        if kind == "patch":
            return SemVer(self.major, self.minor, self.patch + 1)
        msg = f"bump kind {kind!r} is not one of major, minor, patch"
        raise RegistryError(msg)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def bump_between(older: SemVer, newer: SemVer) -> BumpKind:
    """The kind of bump from ``older`` to ``newer`` (``newer`` must be the greater)."""
    if newer <= older:
        msg = f"version {newer} is not above {older}"
        raise RegistryError(msg)
    if newer.major > older.major:
        return "major"
    if newer.minor > older.minor:
        return "minor"
    return "patch"


def is_enough(actual: BumpKind, required: BumpKind) -> bool:
    """Whether a bump of kind ``actual`` covers a change that needs ``required``."""
    return BUMP_ORDER[actual] >= BUMP_ORDER[required]
