"""What every section shares: frozen, extra="forbid" models, the project root, and
validation errors that name the field but never a secret's value."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from lakecast.errors import ConfigError

# A config error shows no value of a key whose name holds one of these (nor of an unknown key:
# a typo of `sasl_password` is still a password).
SECRET_WORDS = ("password", "secret", "token", "key")
# Under spark-submit the package is imported from a zip in --py-files, so the project root is
# passed explicitly (spark-submit.sh exports LAKECAST_HOME); otherwise it is the source tree.
PROJECT_ROOT = Path(os.environ.get("LAKECAST_HOME") or Path(__file__).resolve().parents[3])


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


SectionT = TypeVar("SectionT", bound=BaseModel)


def looks_secret(name: str) -> bool:
    """Whether a config key's name says its value is a secret (``sasl_password``, ``token``)."""
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS)


def describe_validation_error(error: ValidationError, what: str) -> str:
    """One line naming every invalid field, its problem and the value found.

    The value is left out where the key looks like a secret or is unknown (a misspelt
    ``sasl_pasword: hunter2`` must not print the password it holds).
    """
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "<root>"
        found = item.get("input")
        hidden = item["type"] == "extra_forbidden" or any(
            looks_secret(str(part)) for part in item["loc"]
        )
        if isinstance(found, dict):
            shown = ""
        elif hidden:
            shown = " (value not shown)"
        else:
            shown = f" (found {found!r})"
        problems.append(f"{field}: {item['msg']}{shown}")
    return f"invalid {what}: " + "; ".join(problems)


def with_overrides(section: SectionT, update: Mapping[str, object], what: str) -> SectionT:
    """``section`` with the fields of ``update`` replaced, validated as the config file is.

    Raises:
        ConfigError: a replaced value is invalid (``what`` says where it came from).
    """
    try:
        return type(section).model_validate({**section.model_dump(), **update})
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, what)) from exc


def read_secret_file(path: str, setting: str) -> str:
    """The secret a ``*_password_file`` setting names: the file's content without its line
    ending (a password may begin or end with a space). A relative path is under the project
    root.

    Raises:
        ConfigError: naming ``setting`` and the path when the file cannot be read or is
            empty; never its content.
    """
    where = Path(path) if Path(path).is_absolute() else PROJECT_ROOT / path
    try:
        secret = where.read_text().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        msg = f"{setting} {where}: cannot read it ({reason})"
        raise ConfigError(msg) from exc
    if not secret:
        msg = f"{setting} {where} is empty"
        raise ConfigError(msg)
    return secret
