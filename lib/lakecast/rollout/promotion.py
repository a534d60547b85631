"""Moving a serving alias by hand or by a job, through the same gates as a rollout.

``lakecast models promote`` and ``jobs/train.py`` call :func:`promote_through_gates`: the
candidate is gated against the version the alias points at now (or, with none, against the
config's ``min_holdout`` bar), and the alias moves only if every gate passed. ``force`` with a
reason moves it anyway; the audit row's reason then names the gates that failed, so a forced
move can be found later (``lakecast models audit``).
"""

from __future__ import annotations

from dataclasses import dataclass

from lakecast.errors import ModelNotFoundError, RolloutError
from lakecast.registry import AliasState, Registry, current_user
from lakecast.rollout.gates import GateConfig, GateReport, VersionFacts, run_gates

FORCED = "FORCED"


@dataclass(frozen=True)
class GatedPromotion:
    """Where the alias points after the move, the gates' report and whether it was forced."""

    state: AliasState
    report: GateReport
    forced: bool


def audit_reason(report: GateReport, reason: str, *, forced: bool) -> str:
    """The reason recorded with the move: the user's, and what the gates said."""
    if report.passed:
        gates = "gates passed: " + ", ".join(r.gate for r in report.results)
        return f"{reason} ({gates})" if reason else gates
    failed = "; ".join(f"{r.gate}: {r.message}" for r in report.failed)
    if forced:
        return f"{FORCED} past failed gates ({failed}): {reason}"
    return failed


def promote_through_gates(
    registry: Registry,
    name: str,
    version: str,
    alias: str,
    *,
    reason: str = "",
    force: bool = False,
    who: str | None = None,
    config: GateConfig | None = None,
) -> GatedPromotion:
    """Gate ``name:version`` against ``name@alias`` and, if it passes (or ``force``), move it.

    Raises:
        ModelNotFoundError: the version is not registered.
        RolloutError: a gate failed and ``force`` was not given (each failed gate named), or
            ``force`` was given without a reason.
    """
    if force and not reason.strip():
        msg = f"promote {name}:{version} --force needs --reason TEXT (recorded in the audit)"
        raise RolloutError(msg)
    candidate = registry.resolve(f"{name}:{version}")
    try:
        current = registry.resolve(f"{name}@{alias}")
    except ModelNotFoundError:
        current = None
    champion = None if current is None or current.version == candidate.version else current
    report = run_gates(
        VersionFacts.from_mapping(candidate),
        None if champion is None else VersionFacts.from_mapping(champion),
        config or GateConfig.configured(),
    )
    if not report.passed and not force:
        failed = "; ".join(f"{r.gate}: {r.message}" for r in report.failed)
        msg = (
            f"promote {candidate.ref} to {name}@{alias} refused by the gates: {failed} "
            "(--force --reason TEXT moves it anyway, recorded in the audit)"
        )
        raise RolloutError(msg)
    forced = force and not report.passed
    state = registry.promote(
        name,
        candidate.version,
        alias,
        who=who or current_user(),
        why=audit_reason(report, reason, forced=forced),
    )
    return GatedPromotion(state, report, forced)
