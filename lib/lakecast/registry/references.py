"""Model references as users type them: ``NAME``, ``NAME:1.2.0`` and ``NAME@ALIAS``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from lakecast.errors import RegistryError
from lakecast.registry.semver import SemVer

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def check_name(kind: str, value: str) -> str:
    """Refuse names that could not round-trip through a reference (``:``, ``@``, spaces)."""
    if not _NAME.match(value):
        msg = (
            f"{kind} {value!r} is not a valid name "
            "(letters, digits, '_', '.', '-'; starting with a letter or digit; at most 128)"
        )
        raise RegistryError(msg)
    return value


@dataclass(frozen=True)
class ModelReference:
    """A parsed reference: a name and at most one of an exact version or an alias."""

    name: str
    version: str | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version:
            return f"{self.name}:{self.version}"
        if self.alias:
            return f"{self.name}@{self.alias}"
        return self.name


def parse_reference(text: str) -> ModelReference:
    """Parse ``NAME``, ``NAME:VERSION`` or ``NAME@ALIAS``.

    Raises:
        RegistryError: the text is empty, has both ``:`` and ``@``, or a part is not a valid name.
    """
    text = text.strip()
    if ":" in text and "@" in text:
        msg = f"model reference {text!r}: use NAME:VERSION or NAME@ALIAS, not both"
        raise RegistryError(msg)
    if "@" in text:
        name, alias = text.split("@", 1)
        return ModelReference(check_name("model name", name), alias=check_name("alias", alias))
    if ":" in text:
        name, version = text.split(":", 1)
        return ModelReference(check_name("model name", name), version=str(SemVer.parse(version)))
    return ModelReference(check_name("model name", text))
