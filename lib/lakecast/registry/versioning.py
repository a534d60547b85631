"""The rules that pick a new version number and refuse a bump too small for the change."""

from __future__ import annotations

from typing import Literal

from lakecast.errors import VersionRuleError
from lakecast.registry.artifacts import StoredArtifact
from lakecast.registry.records import ModelVersion
from lakecast.registry.semver import FIRST_VERSION, BumpKind, SemVer, bump_between, is_enough
from lakecast.registry.signature import Signature, diff_signatures


def required_bump(
    base: ModelVersion, signature: Signature, sha256: str, flavor: str, nan_policy: str
) -> tuple[BumpKind, str]:
    """The least bump a change from ``base`` needs, and why."""
    diff = diff_signatures(base.signature, signature)
    if not diff.is_compatible:
        return "major", f"the signature changed incompatibly: {diff.describe()}"
    if sha256 != base.sha256 or flavor != base.flavor:
        return "minor", f"the artifact changed (sha256 {base.sha256[:12]} -> {sha256[:12]})"
    if diff.precision:
        return "minor", f"inputs are read at another precision: {diff.describe()}"
    if nan_policy != base.nan_policy:
        return "minor", f"the NaN policy changed ({base.nan_policy} -> {nan_policy})"
    return "patch", "only metadata or the card changed"


def target_version(
    name: str,
    existing: list[ModelVersion],
    version: str | None,
    bump: BumpKind | Literal["auto"],
    stored: StoredArtifact | None,
    signature: Signature | None,
    flavor: str | None,
    nan_policy: str | None,
) -> SemVer:
    taken = {v.version for v in existing}
    if version is not None:
        target = SemVer.parse(version)
        if str(target) in taken:
            msg = f"register {name!r}: version {target} already exists"
            raise VersionRuleError(msg)
        return target
    if not existing:
        return SemVer.parse(FIRST_VERSION)
    latest = max(existing, key=lambda v: v.semver)
    if bump == "auto":
        if stored is None:
            return latest.semver.bump("patch")
        kind, _ = required_bump(
            latest,
            signature or latest.signature,
            stored.sha256,
            flavor or latest.flavor,
            nan_policy or latest.nan_policy,
        )
        return latest.semver.bump(kind)
    return latest.semver.bump(bump)


def check_bump(base: ModelVersion, record: ModelVersion) -> None:
    needed, why = required_bump(
        base, record.signature, record.sha256, record.flavor, record.nan_policy
    )
    actual = bump_between(base.semver, record.semver)
    if not is_enough(actual, needed):
        msg = (
            f"register {record.name!r} {record.version}: a {actual} bump from {base.version} "
            f"is not enough, {why}; it needs a {needed} bump"
        )
        raise VersionRuleError(msg)
