"""The model registry's public API: register, resolve, promote, rollback, audit, load.

One :class:`Registry` per root (``settings().registry_root`` unless given). State lives in the
Delta tables of :mod:`lakecast.registry.store`; artifacts in :mod:`lakecast.registry.artifacts`.
A registration or an alias move is one commit that is also its audit record (see the store).
"""

from __future__ import annotations

import getpass
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lakecast.errors import ModelNotFoundError, RegistryError, VersionRuleError
from lakecast.lake.deltars import CrashPoint, stale
from lakecast.models.predictor import NanPolicy, check_nan_policy
from lakecast.registry.aliases import ChooseVersion, latest_moves, move_alias
from lakecast.registry.artifacts import ArtifactStore, StoredArtifact, read_verified
from lakecast.registry.cards import ModelCard
from lakecast.registry.records import (
    FLAVORS,
    AliasState,
    AuditEntry,
    Flavor,
    Lineage,
    ModelVersion,
    check_metrics,
)
from lakecast.registry.references import ModelReference, check_name, parse_reference
from lakecast.registry.rows import (
    alias_from_row,
    audit_from_row,
    audit_of_alias_row,
    audit_of_version_row,
    version_from_row,
    version_row,
)
from lakecast.registry.semver import BumpKind, SemVer
from lakecast.registry.signature import Signature
from lakecast.registry.store import RegistryTables, utc_now
from lakecast.registry.versioning import check_bump, target_version

if TYPE_CHECKING:
    from lakecast.models.predictor import Predictor

_SUFFIX_FLAVORS: dict[str, Flavor] = {".keras": "keras", ".skops": "sklearn", ".onnx": "onnx"}


def current_user() -> str:
    """Who is acting: ``$USER``, else the login name, else ``unknown``."""
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@dataclass(frozen=True)
class ModelSummary:
    """One line of ``lakecast models list``."""

    name: str
    description: str
    latest: str | None
    versions: int
    aliases: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of re-hashing one version's artifact."""

    ref: str
    ok: bool
    detail: str
    # The libraries it was trained with against this process's (major.minor); informative only.
    libraries: str = ""


class Registry:
    """Versions, aliases and the audit log of every model under one root."""

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        max_attempts: int = 30,
        crash_point: CrashPoint | None = None,
    ) -> None:
        """``crash_point`` is a test hook: called at each point a write reaches (see the store)."""
        if root is None:
            from lakecast.config import settings

            root = settings().registry_root
        self.root = str(root)
        self.tables = RegistryTables(self.root, max_attempts=max_attempts, crash_point=crash_point)
        self.artifacts = ArtifactStore(self.root)

    # ---- registering -------------------------------------------------------------------
    def register(
        self,
        name: str,
        model: Any = None,
        *,
        artifact: str | Path | None = None,
        flavor: Flavor | None = None,
        signature: Signature | None = None,
        metrics: Mapping[str, float] | None = None,
        lineage: Lineage | None = None,
        card: ModelCard | None = None,
        nan_policy: NanPolicy | None = None,
        version: str | None = None,
        bump: BumpKind | Literal["auto"] = "auto",
        created_by: str | None = None,
        description: str = "",
        validate: bool = True,
    ) -> ModelVersion:
        """Register a new version of ``name``.

        Give a ``model`` object (saved in its flavor's format), an ``artifact`` file
        (``.keras`` / ``.skops``), or neither for a card/metadata-only patch of the version
        below. The version is ``version`` if given, else the latest bumped by ``bump``
        (``auto``: the least bump the change needs; the first version is 1.0.0).

        Raises:
            VersionRuleError: the version exists, or bumps less than the change needs (an
                incompatible signature needs a major bump; the message names the columns).
            UnsafeArtifactError: ``validate`` and the artifact does not load safely.
        """
        check_name("model name", name)
        who = created_by or current_user()
        policy = check_nan_policy(nan_policy) if nan_policy is not None else None
        stored, flavor = self._store_artifact(name, model, artifact, flavor)
        if stored is not None and signature is None:
            msg = f"register {name!r}: a model or artifact needs its signature"
            raise RegistryError(msg)
        metrics_checked = check_metrics(metrics) if metrics is not None else None
        if stored is not None and validate:
            self._validate_artifact(name, stored, flavor, signature, policy or "error")

        def attempt() -> ModelVersion:
            snapshot = self.tables.ensure("versions")
            existing = [
                version_from_row(r, self.artifacts.root)
                for r in self.tables.read("versions", {"name": name}, snapshot)
            ]
            target = target_version(
                name, existing, version, bump, stored, signature, flavor, policy
            )
            below = [v for v in existing if v.semver < target]
            base = max(below, key=lambda v: v.semver) if below else None
            record = self._new_record(
                name,
                str(target),
                base,
                stored,
                flavor,
                signature,
                metrics_checked,
                lineage,
                card,
                policy,
                who,
                description,
            )
            if base is not None:
                check_bump(base, record)
            self._ensure_model(name, description, who)
            row = version_row(record, self.artifacts.root)
            if not self.tables.upsert(snapshot, "versions", row, insert=True):
                msg = f"version {name}:{target} appeared meanwhile"
                raise stale(msg)
            return record

        return self.tables.with_retry(attempt, f"register {name!r}")

    def _new_record(
        self,
        name: str,
        version: str,
        base: ModelVersion | None,
        stored: StoredArtifact | None,
        flavor: Flavor | None,
        signature: Signature | None,
        metrics: dict[str, float] | None,
        lineage: Lineage | None,
        card: ModelCard | None,
        nan_policy: NanPolicy | None,
        who: str,
        description: str,
    ) -> ModelVersion:
        """The record to write: a new artifact, or (metadata-only) the base's artifact."""
        common = {
            "name": name,
            "version": version,
            "created_at": utc_now(),
            "created_by": who,
            "description": description,
        }
        if stored is None:
            if base is None:
                msg = f"register {name!r} {version}: a metadata-only version needs one below it"
                raise VersionRuleError(msg)
            return ModelVersion(
                flavor=base.flavor,
                signature=signature or base.signature,
                metrics=dict(base.metrics) if metrics is None else metrics,
                lineage=lineage or base.lineage,
                card=card or base.card,
                nan_policy=nan_policy or base.nan_policy,
                sha256=base.sha256,
                artifact_path=base.artifact_path,
                **common,  # type: ignore[arg-type]
            )
        if flavor is None or signature is None:
            msg = f"register {name!r} {version}: a new artifact needs its flavor and signature"
            raise RegistryError(msg)
        return ModelVersion(
            flavor=flavor,
            signature=signature,
            metrics=metrics or {},
            lineage=lineage or Lineage(),
            card=card or (base.card if base else ModelCard()),
            nan_policy=nan_policy or (base.nan_policy if base else "error"),
            sha256=stored.sha256,
            artifact_path=str(self.artifacts.path_of(stored.relative_path)),
            **common,  # type: ignore[arg-type]
        )

    def _store_artifact(
        self, name: str, model: Any, artifact: str | Path | None, flavor: Flavor | None
    ) -> tuple[StoredArtifact | None, Flavor | None]:
        if model is not None and artifact is not None:
            msg = f"register {name!r}: give a model or an artifact file, not both"
            raise RegistryError(msg)
        if model is not None:
            from lakecast.models.flavors import detect_flavor, save_model

            chosen: Flavor = flavor or detect_flavor(model)
            with tempfile.TemporaryDirectory(prefix="lakecast-register-") as tmp:
                return self.artifacts.put(save_model(model, chosen, Path(tmp))), chosen
        if artifact is not None:
            path = Path(artifact)
            guessed = flavor or _SUFFIX_FLAVORS.get(path.suffix)
            if guessed is None or guessed not in FLAVORS:
                msg = f"register {name!r}: cannot tell the flavor of {path}; pass flavor="
                raise RegistryError(msg)
            return self.artifacts.put(path), guessed
        return None, flavor

    def _validate_artifact(
        self,
        name: str,
        stored: StoredArtifact,
        flavor: Flavor | None,
        signature: Signature | None,
        nan_policy: NanPolicy,
    ) -> None:
        from lakecast.models.flavors import build_predictor

        data = read_verified(
            self.artifacts.path_of(stored.relative_path), stored.sha256, name, "new"
        )
        assert signature is not None and flavor is not None  # noqa: S101 - checked by caller
        build_predictor(
            data, flavor, signature, nan_policy, f"register {name!r}", sha256_verified=True
        )

    def _ensure_model(self, name: str, description: str, who: str) -> None:
        def attempt() -> None:
            snapshot = self.tables.ensure("models")
            if self.tables.read("models", {"name": name}, snapshot):
                return
            row = {
                "name": name,
                "description": description,
                "created_at": utc_now(),
                "created_by": who,
            }
            self.tables.upsert(snapshot, "models", row, insert=True)

        self.tables.with_retry(attempt, f"create model {name!r}")

    # ---- reading -----------------------------------------------------------------------
    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, oldest semver first (empty when unknown)."""
        rows = self.tables.read("versions", {"name": name})
        found = [version_from_row(r, self.artifacts.root) for r in rows]
        return sorted(found, key=lambda v: v.semver)

    def list_models(self) -> list[ModelSummary]:
        """Every model with its latest version and its aliases."""
        summaries = []
        for row in sorted(self.tables.read("models"), key=lambda r: r["name"]):
            versions = self.versions(row["name"])
            aliases = {a.alias: a.version for a in self.aliases(row["name"]).values()}
            summaries.append(
                ModelSummary(
                    row["name"],
                    row["description"] or "",
                    versions[-1].version if versions else None,
                    len(versions),
                    aliases,
                )
            )
        return summaries

    def aliases(self, name: str) -> dict[str, AliasState]:
        rows = self.tables.read("aliases", {"name": name})
        return {alias: alias_from_row(row) for alias, row in latest_moves(rows).items()}

    def revision(self) -> tuple[int | None, int | None]:
        """A value that changes whenever a version or an alias is written: the Delta versions
        of the tables :meth:`resolve` reads. For pollers (a worker re-resolving its alias
        every few seconds): about 1 ms, a tenth of a :meth:`resolve`."""
        return self.tables.latest_version("versions"), self.tables.latest_version("aliases")

    def resolve(self, reference: str | ModelReference) -> ModelVersion:
        """``NAME@ALIAS``, ``NAME:VERSION`` or ``NAME`` (the latest) to a version record.

        Raises:
            ModelNotFoundError: naming the unknown model, version or alias.
        """
        ref = parse_reference(reference) if isinstance(reference, str) else reference
        versions = self.versions(ref.name)
        if not versions:
            msg = f"model {ref.name!r} is not registered in {self.root}"
            raise ModelNotFoundError(msg)
        wanted = ref.version
        if ref.alias is not None:
            state = self.aliases(ref.name).get(ref.alias)
            if state is None:
                known = sorted(self.aliases(ref.name))
                msg = f"model {ref.name!r} has no alias {ref.alias!r} (aliases: {known or 'none'})"
                raise ModelNotFoundError(msg)
            wanted = state.version
        if wanted is None:
            return versions[-1]
        for candidate in versions:
            if candidate.version == wanted:
                return candidate
        known_versions = [v.version for v in versions]
        msg = f"model {ref.name!r} has no version {wanted} (versions: {known_versions})"
        raise ModelNotFoundError(msg)

    def load(self, reference: str | ModelReference) -> tuple[ModelVersion, Predictor]:
        """Resolve, verify the artifact's sha256 and load it as a Predictor."""
        from lakecast.models import load_model

        record = self.resolve(reference)
        return record, load_model(record)

    def verify(self, reference: str | None = None) -> list[VerifyResult]:
        """Re-hash artifacts: of one version (``NAME:VERSION``), one model, or all models."""
        if reference is None:
            targets = [v for m in self.list_models() for v in self.versions(m.name)]
        else:
            ref = parse_reference(reference)
            targets = [self.resolve(ref)] if ref.version or ref.alias else self.versions(ref.name)
            if not targets:
                msg = f"model {ref.name!r} is not registered in {self.root}"
                raise ModelNotFoundError(msg)
        from lakecast.registry.environment import compare_libraries, describe_libraries

        results = []
        for record in targets:
            libraries = describe_libraries(compare_libraries(record.lineage.libraries))
            try:
                read_verified(
                    Path(record.artifact_path), record.sha256, record.name, record.version
                )
            except RegistryError as exc:
                results.append(VerifyResult(record.ref, False, str(exc), libraries))
            else:
                results.append(VerifyResult(record.ref, True, record.sha256, libraries))
        return results

    def audit(self, name: str | None = None) -> list[AuditEntry]:
        """The audit log (of one model, or all), oldest first: every registration (a ``versions``
        row), every alias move (an ``aliases`` row) and every row of ``audit``."""
        where = {"name": name} if name else None
        entries = [audit_of_version_row(r) for r in self.tables.read("versions", where)]
        moves = (audit_of_alias_row(r) for r in self.tables.read("aliases", where))
        entries += [e for e in moves if e is not None]
        # Registrations in ``audit`` were written by releases before versions rows were the
        # record; the versions rows stand for them.
        entries += [
            audit_from_row(r) for r in self.tables.read("audit", where) if r["action"] != "register"
        ]
        return sorted(entries, key=lambda e: (e.at, e.seq or 0))

    # ---- aliases -----------------------------------------------------------------------
    def promote(
        self, name: str, version: str, alias: str, who: str | None = None, why: str = ""
    ) -> AliasState:
        """Point ``alias`` at ``version``; the version it left is kept for rollback.

        Concurrent promotions of one alias are serialised by Delta's optimistic concurrency:
        the loser re-reads and applies on top, so no promotion is lost.
        """
        check_name("alias", alias)
        target = self.resolve(ModelReference(name, version=str(SemVer.parse(version))))
        return self._move_alias(
            name, alias, "promote", who or current_user(), why, lambda current: target.version
        )

    def rollback(self, name: str, alias: str, who: str | None = None, why: str = "") -> AliasState:
        """Point ``alias`` back at the version it pointed at before the last move.

        Raises:
            ModelNotFoundError: the alias does not exist.
            RegistryError: the alias has no earlier version.
        """
        check_name("alias", alias)

        def previous(current: AliasState | None) -> str:
            if current is None:
                msg = f"rollback {name}@{alias}: no such alias"
                raise ModelNotFoundError(msg)
            if not current.history:
                msg = f"rollback {name}@{alias}: it has pointed only at {current.version}"
                raise RegistryError(msg)
            return current.history[-1]

        return self._move_alias(name, alias, "rollback", who or current_user(), why, previous)

    def _move_alias(
        self, name: str, alias: str, action: str, who: str, why: str, choose: ChooseVersion
    ) -> AliasState:
        return move_alias(self.tables, name, alias, action, who, why, choose)[0]
