"""Pre-rollout gates: pure checks a candidate version must pass before it takes any traffic.

Each gate compares plain facts about the candidate and the champion (signature, holdout
metrics, model card, batch latency) and returns a :class:`GateResult` that names the gate,
whether it passed, and by how much. The facts are a small dataclass rather than the
registry's own record type, so the registry can change without touching the gates:
:meth:`VersionFacts.from_mapping` reads any record that has the fields (or attributes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from lakecast.config import GateSettings
from lakecast.errors import RolloutError
from lakecast.registry.cards import REQUIRED_SECTIONS
from lakecast.registry.signature import FLOAT_DTYPES

# The sections the registry requires of a card (ethical considerations may stay blank).
DEFAULT_CARD_FIELDS = REQUIRED_SECTIONS
LATENCY_METRIC = "batch_latency_ms"


def _columns(value: Any) -> dict[str, str]:
    """Column name -> type from a mapping, one column or a sequence of columns.

    A column is a ``{"name": ..., "dtype": ...}`` mapping or an object with ``name`` and
    ``dtype`` attributes (the registry's ``ColumnSpec``).
    """
    if value is None:
        return {}
    if isinstance(value, Mapping):
        if "name" in value and "dtype" in value:
            return {str(value["name"]): str(value["dtype"])}
        return {str(k): str(v) for k, v in value.items()}
    if hasattr(value, "name") and hasattr(value, "dtype"):
        return {str(value.name): str(value.dtype)}
    columns: dict[str, str] = {}
    for column in value:
        columns.update(_columns(column))
    return columns


def _card_fields(card: Any) -> dict[str, Any]:
    if card is None:
        return {}
    if isinstance(card, Mapping):
        return dict(card)
    if is_dataclass(card) and not isinstance(card, type):
        return asdict(card)
    return dict(vars(card))


@dataclass(frozen=True)
class VersionFacts:
    """What the gates need to know about one model version.

    ``inputs`` / ``outputs`` map column names to type names; ``card`` is the model card's
    fields (a field that is missing, None or blank counts as not filled in).
    """

    ref: str
    inputs: Mapping[str, str] = field(default_factory=dict)
    outputs: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    card: Mapping[str, Any] = field(default_factory=dict)
    batch_latency_ms: float | None = None

    @classmethod
    def from_mapping(cls, record: Mapping[str, Any] | Any) -> VersionFacts:
        """Facts from a dict or any object with these fields as attributes.

        Reads the registry's ``ModelVersion`` as it is: ``signature`` with ``inputs`` (columns)
        and ``output`` (one column) or ``outputs``; ``card`` as a dataclass or a mapping;
        ``batch_latency_ms`` as a field or, failing that, a metric. ``ref`` falls back to
        ``name:version``.
        """

        def get(source: Any, name: str, default: Any = None) -> Any:
            if isinstance(source, Mapping):
                return source.get(name, default)
            return getattr(source, name, default)

        signature = get(record, "signature") or {}
        inputs = get(record, "inputs") or get(signature, "inputs")
        outputs = get(record, "outputs") or get(signature, "outputs") or get(signature, "output")
        metrics = {
            str(k): float(v)
            for k, v in (get(record, "metrics") or {}).items()
            if isinstance(v, int | float)
        }
        latency = get(record, "batch_latency_ms")
        if latency is None:
            latency = metrics.get(LATENCY_METRIC)
        ref = get(record, "ref") or f"{get(record, 'name', '?')}:{get(record, 'version', '?')}"
        return cls(
            ref=str(ref),
            inputs=_columns(inputs),
            outputs=_columns(outputs),
            metrics=metrics,
            card=_card_fields(get(record, "card")),
            batch_latency_ms=None if latency is None else float(latency),
        )


class GateResult(BaseModel):
    """One gate's outcome: ``delta`` is the measured gap (positive: better than needed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gate: str
    passed: bool
    measured: float | None = None
    threshold: float | None = None
    delta: float | None = None
    message: str


class GateConfig(GateSettings):
    """Which metric decides, how much worse anything may be, and the card sections required.

    The defaults are ``rollout.gates`` of the config (:class:`lakecast.config.GateSettings`);
    :meth:`configured` overlays a rollout file's ``gates:`` section on the loaded config.
    """

    card_fields: tuple[str, ...] = DEFAULT_CARD_FIELDS

    @classmethod
    def configured(cls, overrides: Mapping[str, Any] | None = None) -> GateConfig:
        """The config's ``rollout.gates`` with ``overrides`` (e.g. a rollout file's) on top."""
        from lakecast.config import settings

        base = settings().rollout.gates.model_dump()
        return cls.model_validate({**base, **dict(overrides or {})})


def _type_changes(
    champion: Mapping[str, str], candidate: Mapping[str, str], *, inputs: bool = False
) -> list[str]:
    """Shared columns whose type differs; for ``inputs``, a float read at another precision
    is no change (the same columns feed it, see ``registry.signature``)."""
    return [
        f"{name} {champion[name]}->{candidate[name]}"
        for name in sorted(set(champion) & set(candidate))
        if champion[name] != candidate[name]
        and not (inputs and {champion[name], candidate[name]} <= FLOAT_DTYPES)
    ]


def signature_compatible(candidate: VersionFacts, champion: VersionFacts) -> GateResult:
    """The candidate reads no input the champion is not fed and writes every champion output.

    Types of shared columns must match. ``delta`` is minus the number of offending columns.
    """
    problems: list[str] = []
    new_inputs = sorted(set(candidate.inputs) - set(champion.inputs))
    if new_inputs:
        problems.append(f"needs inputs the champion is not fed: {new_inputs}")
    changed_inputs = _type_changes(champion.inputs, candidate.inputs, inputs=True)
    if changed_inputs:
        problems.append(f"input types changed: {changed_inputs}")
    lost_outputs = sorted(set(champion.outputs) - set(candidate.outputs))
    if lost_outputs:
        problems.append(f"drops outputs: {lost_outputs}")
    changed_outputs = _type_changes(champion.outputs, candidate.outputs)
    if changed_outputs:
        problems.append(f"output types changed: {changed_outputs}")
    offending = len(new_inputs) + len(changed_inputs) + len(lost_outputs) + len(changed_outputs)
    message = (
        f"{candidate.ref}: signature compatible with {champion.ref}"
        if not problems
        else f"{candidate.ref}: signature incompatible with {champion.ref}: " + "; ".join(problems)
    )
    return GateResult(
        gate="signature_compatible",
        passed=not problems,
        measured=float(offending),
        threshold=0.0,
        delta=float(-offending),
        message=message,
    )


def holdout_metric_not_worse(
    candidate: VersionFacts,
    champion: VersionFacts,
    metric: str = "holdout_roc_auc",
    margin: float = 0.005,
    *,
    higher_is_better: bool = True,
) -> GateResult:
    """The candidate's holdout metric is no worse than the champion's beyond ``margin``.

    ``delta`` is the improvement (candidate better: positive) plus the margin, so a
    negative delta says by how much the gate was missed.
    """
    gate = "holdout_metric"
    missing = [v.ref for v in (candidate, champion) if metric not in v.metrics]
    if missing:
        return GateResult(
            gate=gate, passed=False, message=f"holdout metric {metric!r} missing for {missing}"
        )
    cand, champ = candidate.metrics[metric], champion.metrics[metric]
    improvement = cand - champ if higher_is_better else champ - cand
    passed = improvement >= -margin
    sign = "higher" if higher_is_better else "lower"
    message = (
        f"{candidate.ref}: {metric} {cand:.6g} vs champion {champion.ref} {champ:.6g} "
        f"(improvement {improvement:+.6g}, margin {margin:g}, {sign} is better)"
    )
    return GateResult(
        gate=gate,
        passed=passed,
        measured=cand,
        threshold=champ - margin if higher_is_better else champ + margin,
        delta=improvement + margin,
        message=message,
    )


def holdout_metric_minimum(
    candidate: VersionFacts,
    metric: str,
    minimum: float,
    *,
    higher_is_better: bool = True,
) -> GateResult:
    """The candidate's own holdout metric reaches ``minimum`` (the bar of a first champion,
    which has nothing to be compared with); ``delta`` is the headroom above the bar."""
    gate = "holdout_minimum"
    if metric not in candidate.metrics:
        return GateResult(
            gate=gate,
            passed=False,
            threshold=minimum,
            message=f"{candidate.ref}: holdout metric {metric!r} missing (the bar is {minimum:g})",
        )
    value = candidate.metrics[metric]
    headroom = value - minimum if higher_is_better else minimum - value
    word = "at least" if higher_is_better else "at most"
    return GateResult(
        gate=gate,
        passed=headroom >= 0,
        measured=value,
        threshold=minimum,
        delta=headroom,
        message=f"{candidate.ref}: {metric} {value:.6g}, must be {word} {minimum:g}",
    )


def _filled(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, Mapping | Sequence):
        return len(value) > 0
    return True


def model_card_complete(
    candidate: VersionFacts, required: Sequence[str] = DEFAULT_CARD_FIELDS
) -> GateResult:
    """Every required model-card field is filled in; ``delta`` is minus the number missing."""
    missing = [name for name in required if not _filled(candidate.card.get(name))]
    message = (
        f"{candidate.ref}: model card complete"
        if not missing
        else f"{candidate.ref}: model card is missing {missing}"
    )
    return GateResult(
        gate="model_card_complete",
        passed=not missing,
        measured=float(len(required) - len(missing)),
        threshold=float(len(required)),
        delta=float(-len(missing)),
        message=message,
    )


def batch_latency_not_regressed(
    candidate: VersionFacts, champion: VersionFacts, margin: float = 0.10
) -> GateResult:
    """The candidate's batch latency is at most ``(1 + margin)`` times the champion's.

    ``delta`` is the relative headroom left (negative: the regression beyond the margin).
    A champion without a latency (the first version) lets any measured candidate pass.
    """
    gate = "batch_latency"
    if candidate.batch_latency_ms is None:
        return GateResult(
            gate=gate, passed=False, message=f"{candidate.ref}: no batch latency measured"
        )
    if champion.batch_latency_ms is None or champion.batch_latency_ms <= 0:
        return GateResult(
            gate=gate,
            passed=True,
            measured=candidate.batch_latency_ms,
            message=f"{candidate.ref}: champion {champion.ref} has no batch latency to compare",
        )
    ratio = candidate.batch_latency_ms / champion.batch_latency_ms - 1.0
    return GateResult(
        gate=gate,
        passed=ratio <= margin,
        measured=candidate.batch_latency_ms,
        threshold=champion.batch_latency_ms * (1.0 + margin),
        delta=margin - ratio,
        message=(
            f"{candidate.ref}: batch latency {candidate.batch_latency_ms:.4g} ms vs champion "
            f"{champion.batch_latency_ms:.4g} ms ({ratio:+.1%}, allowed +{margin:.0%})"
        ),
    )


class GateReport(BaseModel):
    """Every gate's result; ``passed`` only if all passed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    candidate: str
    champion: str | None
    results: list[GateResult]

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.results)

    @property
    def failed(self) -> list[GateResult]:
        return [result for result in self.results if not result.passed]

    def raise_if_failed(self) -> None:
        """Raises:
        RolloutError: naming each failed gate and why.
        """
        if self.failed:
            reasons = "; ".join(f"{r.gate}: {r.message}" for r in self.failed)
            msg = f"rollout of {self.candidate} refused by pre-rollout gates: {reasons}"
            raise RolloutError(msg)


def run_gates(
    candidate: VersionFacts, champion: VersionFacts | None, config: GateConfig | None = None
) -> GateReport:
    """All gates. With no champion (a first version) the card and, when the config sets
    ``min_holdout``, the candidate's own holdout bar; otherwise the candidate against the
    champion (signature, non-inferior holdout metric, card, batch latency)."""
    config = config or GateConfig.configured()
    results = [model_card_complete(candidate, config.card_fields)]
    if champion is None and config.min_holdout is not None:
        results.append(
            holdout_metric_minimum(
                candidate,
                config.metric,
                config.min_holdout,
                higher_is_better=config.higher_is_better,
            )
        )
    if champion is not None:
        results = [
            signature_compatible(candidate, champion),
            holdout_metric_not_worse(
                candidate,
                champion,
                config.metric,
                config.metric_margin,
                higher_is_better=config.higher_is_better,
            ),
            *results,
            batch_latency_not_regressed(candidate, champion, config.latency_margin),
        ]
    return GateReport(
        candidate=candidate.ref,
        champion=None if champion is None else champion.ref,
        results=results,
    )
