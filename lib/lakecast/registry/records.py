"""The records the registry hands out: a model version, its lineage, alias state, audit entries."""

from __future__ import annotations

import math
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import orjson

from lakecast.errors import RegistryError
from lakecast.models.predictor import NanPolicy
from lakecast.registry.cards import ModelCard
from lakecast.registry.environment import library_versions
from lakecast.registry.semver import SemVer
from lakecast.registry.signature import Signature

Flavor = Literal["keras", "sklearn", "onnx"]
FLAVORS: tuple[Flavor, ...] = ("keras", "sklearn", "onnx")


def lakecast_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lakecast")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def current_git_commit(cwd: str | None = None) -> str | None:
    """The HEAD commit of the working tree, or None outside a git checkout."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


@dataclass(frozen=True)
class Lineage:
    """Where a version came from: training data (table and Delta version), code, parameters."""

    training_table: str | None = None
    training_table_version: int | None = None
    git_commit: str | None = None
    lakecast_version: str = field(default_factory=lakecast_version)
    parameters: Mapping[str, Any] = field(default_factory=dict)
    holdout: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"from": ..., "to": ...}
    # An optimised version (lakecast models optimize): its source NAME:VERSION, and the kind,
    # tolerance and parity figures of the conversion.
    optimized_from: str | None = None
    optimization: Mapping[str, Any] = field(default_factory=dict)
    # python, scikit-learn, keras, tensorflow, numpy, lakecast as the version was made; empty
    # for a version registered before lineage kept them (reported as unknown, never refused).
    libraries: Mapping[str, str] = field(default_factory=library_versions)

    def to_json(self) -> str:
        return orjson.dumps(
            {
                "training_table": self.training_table,
                "training_table_version": self.training_table_version,
                "git_commit": self.git_commit,
                "lakecast_version": self.lakecast_version,
                "parameters": dict(self.parameters),
                "holdout": dict(self.holdout),
                "optimized_from": self.optimized_from,
                "optimization": dict(self.optimization),
                "libraries": dict(self.libraries),
            },
            option=orjson.OPT_SORT_KEYS,
            default=str,
        ).decode()

    @classmethod
    def from_json(cls, text: str) -> Lineage:
        data = orjson.loads(text) if text else {}
        return cls(
            training_table=data.get("training_table"),
            training_table_version=data.get("training_table_version"),
            git_commit=data.get("git_commit"),
            lakecast_version=data.get("lakecast_version", "unknown"),
            parameters=data.get("parameters") or {},
            holdout=data.get("holdout") or {},
            optimized_from=data.get("optimized_from"),
            optimization=data.get("optimization") or {},
            libraries=data.get("libraries") or {},
        )


def check_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Metrics as a name -> finite float dict; anything else is refused by name."""
    checked: dict[str, float] = {}
    for name, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            msg = f"metric {name!r}: {value!r} is not a number"
            raise RegistryError(msg) from exc
        if not math.isfinite(number):
            msg = f"metric {name!r}: {number} is not finite"
            raise RegistryError(msg)
        checked[str(name)] = number
    return checked


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model, as stored in the ``versions`` table."""

    name: str
    version: str
    flavor: Flavor
    signature: Signature
    metrics: Mapping[str, float]
    lineage: Lineage
    card: ModelCard
    nan_policy: NanPolicy
    sha256: str
    artifact_path: str  # absolute, resolved against the registry root on read
    created_at: datetime
    created_by: str
    status: str = "registered"
    description: str = ""

    @property
    def semver(self) -> SemVer:
        return SemVer.parse(self.version)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class AliasState:
    """Where an alias points, the versions it pointed at before (a stack), its change count."""

    name: str
    alias: str
    version: str
    history: tuple[str, ...]  # oldest first; rollback pops the last
    seq: int
    updated_at: datetime
    updated_by: str
    reason: str


@dataclass(frozen=True)
class AuditEntry:
    """One row of the ``audit`` table: who did what to which model, when and why."""

    at: datetime
    who: str
    action: str  # register, promote, rollback
    name: str
    version: str
    alias: str | None = None
    previous_version: str | None = None
    seq: int | None = None
    reason: str = ""
