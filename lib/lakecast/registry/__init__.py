"""The model registry: versions with semantic-versioning rules, aliases, cards, audit log.

State is in Delta tables written with delta-rs (no JVM); artifacts are content-addressed and
verified on every load.

    registry = Registry("/tmp/reg")
    v1 = registry.register("ctr", model, signature=Signature.of(["a", "b"]), metrics={"auc": 0.7})
    registry.promote("ctr", v1.version, "champion", why="first model")
    record, predictor = registry.load("ctr@champion")
"""

from __future__ import annotations

from lakecast.registry.cards import ModelCard, card_is_complete, render_card
from lakecast.registry.records import AliasState, AuditEntry, Lineage, ModelVersion
from lakecast.registry.references import ModelReference, parse_reference
from lakecast.registry.registry import ModelSummary, Registry, VerifyResult, current_user
from lakecast.registry.semver import SemVer
from lakecast.registry.signature import ColumnSpec, Signature, SignatureDiff, diff_signatures

__all__ = [
    "AliasState",
    "AuditEntry",
    "ColumnSpec",
    "Lineage",
    "ModelCard",
    "ModelReference",
    "ModelSummary",
    "ModelVersion",
    "Registry",
    "SemVer",
    "Signature",
    "SignatureDiff",
    "VerifyResult",
    "card_is_complete",
    "current_user",
    "diff_signatures",
    "parse_reference",
    "render_card",
]
