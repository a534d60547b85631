"""Conversions between Delta rows (JSON strings in columns) and registry records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from lakecast.models.predictor import check_nan_policy
from lakecast.registry.artifacts import stored_artifact_path
from lakecast.registry.cards import ModelCard
from lakecast.registry.records import AliasState, AuditEntry, Lineage, ModelVersion
from lakecast.registry.signature import Signature


def version_row(record: ModelVersion, artifacts_root: Path) -> dict[str, Any]:
    """The ``versions`` row of a record; the artifact path is stored relative to the root."""
    path = Path(record.artifact_path)
    relative = path.relative_to(artifacts_root) if path.is_relative_to(artifacts_root) else path
    semver = record.semver
    return {
        "name": record.name,
        "version": record.version,
        "major": semver.major,
        "minor": semver.minor,
        "patch": semver.patch,
        "flavor": record.flavor,
        "signature": record.signature.to_json(),
        "metrics": orjson.dumps(dict(record.metrics), option=orjson.OPT_SORT_KEYS).decode(),
        "lineage": record.lineage.to_json(),
        "card": record.card.to_json(),
        "nan_policy": record.nan_policy,
        "sha256": record.sha256,
        "artifact_path": relative.as_posix(),
        "status": record.status,
        "description": record.description,
        "created_at": record.created_at,
        "created_by": record.created_by,
    }


def version_from_row(row: dict[str, Any], artifacts_root: Path) -> ModelVersion:
    """The record of a ``versions`` row; the artifact path comes back under the root (a row
    whose path is absolute or climbs out with ``..`` is refused: ModelIntegrityError)."""
    return ModelVersion(
        name=row["name"],
        version=row["version"],
        flavor=row["flavor"],
        signature=Signature.from_json(row["signature"]),
        metrics=orjson.loads(row["metrics"] or "{}"),
        lineage=Lineage.from_json(row["lineage"]),
        card=ModelCard.from_json(row["card"]),
        nan_policy=check_nan_policy(row["nan_policy"]),
        sha256=row["sha256"],
        artifact_path=str(
            stored_artifact_path(
                artifacts_root, row["artifact_path"] or "", row["name"], row["version"]
            )
        ),
        created_at=row["created_at"],
        created_by=row["created_by"] or "",
        status=row["status"] or "registered",
        description=row["description"] or "",
    )


def alias_from_row(row: dict[str, Any]) -> AliasState:
    return AliasState(
        name=row["name"],
        alias=row["alias"],
        version=row["version"],
        history=tuple(orjson.loads(row["history"] or "[]")),
        seq=int(row["seq"]),
        updated_at=row["updated_at"],
        updated_by=row["updated_by"] or "",
        reason=row["reason"] or "",
    )


def audit_from_row(row: dict[str, Any]) -> AuditEntry:
    return AuditEntry(
        at=row["at"],
        who=row["who"] or "",
        action=row["action"],
        name=row["name"],
        version=row["version"],
        alias=row["alias"],
        previous_version=row["previous_version"],
        seq=row["seq"],
        reason=row["reason"] or "",
    )


def audit_of_version_row(row: dict[str, Any]) -> AuditEntry:
    """The registration a ``versions`` row records (the row is its own audit record)."""
    return AuditEntry(
        at=row["created_at"],
        who=row["created_by"] or "",
        action="register",
        name=row["name"],
        version=row["version"],
        reason=row["description"] or "",
    )


def audit_of_alias_row(row: dict[str, Any]) -> AuditEntry | None:
    """The move an ``aliases`` row records; None for a row written before moves carried their
    audit fields (its record is in the ``audit`` table)."""
    if row.get("action") is None:
        return None
    return AuditEntry(
        at=row["updated_at"],
        who=row["updated_by"] or "",
        action=row["action"],
        name=row["name"],
        version=row["version"],
        alias=row["alias"],
        previous_version=row["previous_version"],
        seq=row["seq"],
        reason=row["reason"] or "",
    )
