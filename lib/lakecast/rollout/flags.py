"""Feature flags in the familiar Split.io shape, decided by sticky buckets.

A flag has treatments allocated by bucket ranges, targeting rules on the event's attributes
(first match wins, each with its own allocation), a default treatment for keys no allocation
covers and a kill switch that sends everyone to the default. An unknown flag answers
``"control"``, as Split.io does, so callers can tell "off" from "not configured".

    flags = FeatureFlags.from_dict(
        {"new-model": {"allocations": [{"treatment": "on", "percent": 10}]}}
    )
    flags.is_treatment_on("new-model", "user-42")
    flags.get_treatment("new-model", "user-42", attributes={"device": "ios"})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lakecast.rollout.bucketing import bucket, split_edges

CONTROL = "control"

Operator = Literal["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists"]
Scalar = str | int | float | bool


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Condition(_Frozen):
    """One test on one attribute: ``{"attribute": "device", "op": "eq", "value": "ios"}``.

    A missing attribute never matches, except for ``ne`` / ``not_in`` which it satisfies, and
    ``exists`` which tests for it.
    """

    attribute: str
    op: Operator = "eq"
    value: Scalar | list[Scalar] | None = None

    @model_validator(mode="after")
    def _value_fits_operator(self) -> Condition:
        if self.op in ("in", "not_in") and not isinstance(self.value, list):
            msg = f"condition on {self.attribute!r}: op {self.op!r} needs a list value"
            raise ValueError(msg)
        if self.op not in ("in", "not_in", "exists") and (
            self.value is None or isinstance(self.value, list)
        ):
            msg = f"condition on {self.attribute!r}: op {self.op!r} needs a single value"
            raise ValueError(msg)
        return self

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        """Whether the attributes satisfy this condition."""
        present = self.attribute in attributes and attributes[self.attribute] is not None
        if self.op == "exists":
            return present if self.value is None else present == bool(self.value)
        if not present:
            return self.op in ("ne", "not_in")
        found = attributes[self.attribute]
        if self.op == "eq":
            return bool(found == self.value)
        if self.op == "ne":
            return bool(found != self.value)
        if self.op == "in":
            return found in self.value  # type: ignore[operator]
        if self.op == "not_in":
            return found not in self.value  # type: ignore[operator]
        return _compare(self.op, found, self.value)


def _compare(op: str, found: Any, value: Any) -> bool:
    try:
        if op == "gt":
            return bool(found > value)
        if op == "gte":
            return bool(found >= value)
        if op == "lt":
            return bool(found < value)
        return bool(found <= value)
    except TypeError:
        # An attribute of the wrong type (a string compared with a number) simply does not match.
        return False


def matches_all(conditions: Sequence[Condition], attributes: Mapping[str, Any] | None) -> bool:
    """Whether every condition holds (an empty list holds for everyone)."""
    attrs = attributes or {}
    return all(condition.matches(attrs) for condition in conditions)


class Allocation(_Frozen):
    """A treatment and the share of buckets it gets."""

    treatment: str = Field(min_length=1)
    percent: float = Field(ge=0, le=100)


def _check_allocations(allocations: Sequence[Allocation], where: str) -> None:
    total = sum(allocation.percent for allocation in allocations)
    if total > 100.0 + 1e-9:
        msg = f"{where}: allocations add up to {total:.4g} %, more than 100 %"
        raise ValueError(msg)


class TargetingRule(_Frozen):
    """Keys whose attributes match ``when`` get this rule's allocations instead of the flag's."""

    when: list[Condition] = Field(min_length=1)
    allocations: list[Allocation] = Field(min_length=1)

    @model_validator(mode="after")
    def _shares(self) -> TargetingRule:
        _check_allocations(self.allocations, "targeting rule")
        return self


class FlagDefinition(_Frozen):
    """One flag: allocations by bucket range, targeting rules, default treatment, kill switch.

    Allocations take consecutive bucket ranges in the order listed; what they leave
    uncovered gets ``default_treatment``. List the treatment being rolled out first so that
    raising its share only adds keys.
    """

    allocations: list[Allocation] = Field(default_factory=list)
    rules: list[TargetingRule] = Field(default_factory=list)
    default_treatment: str = "off"
    on_treatment: str = "on"
    killed: bool = False
    configs: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _shares(self) -> FlagDefinition:
        _check_allocations(self.allocations, "flag")
        return self


@dataclass(frozen=True)
class TreatmentDecision:
    """A treatment and why it was given: the bucket and the rule (None: the flag's allocations)."""

    treatment: str
    reason: Literal["killed", "targeting_match", "split", "default", "not_found"]
    bucket: int | None = None
    rule_index: int | None = None


def _pick(allocations: Sequence[Allocation], bucket_id: int) -> str | None:
    """The treatment whose bucket range holds ``bucket_id``; None past every range."""
    edges = split_edges([allocation.percent for allocation in allocations])
    for allocation, edge in zip(allocations, edges, strict=True):
        if bucket_id < edge:
            return allocation.treatment
    return None


def decide(
    name: str, flag: FlagDefinition, key: str, attributes: Mapping[str, Any] | None = None
) -> TreatmentDecision:
    """The treatment ``flag`` (named ``name``, the bucketing salt) gives ``key``."""
    if flag.killed:
        return TreatmentDecision(flag.default_treatment, "killed")
    bucket_id = bucket(name, key)
    for index, rule in enumerate(flag.rules):
        if matches_all(rule.when, attributes):
            chosen = _pick(rule.allocations, bucket_id)
            treatment = flag.default_treatment if chosen is None else chosen
            return TreatmentDecision(treatment, "targeting_match", bucket_id, index)
    chosen = _pick(flag.allocations, bucket_id)
    if chosen is None:
        return TreatmentDecision(flag.default_treatment, "default", bucket_id)
    return TreatmentDecision(chosen, "split", bucket_id)


class FeatureFlags:
    """A set of named flags, evaluated locally and deterministically.

    Args:
        flags: flag name -> definition (or its plain-dict form, as stored in JSON/YAML).
    """

    def __init__(
        self, flags: Mapping[str, FlagDefinition | Mapping[str, Any]] | None = None
    ) -> None:
        self._flags: dict[str, FlagDefinition] = {
            name: flag if isinstance(flag, FlagDefinition) else FlagDefinition.model_validate(flag)
            for name, flag in (flags or {}).items()
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureFlags:
        """Flags from their plain form (``{name: {allocations: [...], rules: [...]}}``)."""
        return cls(data)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form that :meth:`from_dict` reads back."""
        return {name: flag.model_dump(mode="json") for name, flag in self._flags.items()}

    def names(self) -> list[str]:
        return sorted(self._flags)

    def definition(self, name: str) -> FlagDefinition | None:
        return self._flags.get(name)

    def set(self, name: str, flag: FlagDefinition) -> None:
        """Add or replace a flag (definitions are immutable; replace to change one)."""
        self._flags[name] = flag

    def kill(self, name: str) -> None:
        """Send everyone to the flag's default treatment at once.

        Raises:
            KeyError: no flag of that name.
        """
        self._flags[name] = self._flags[name].model_copy(update={"killed": True})

    def evaluate(
        self, name: str, key: str, attributes: Mapping[str, Any] | None = None
    ) -> TreatmentDecision:
        """The treatment and the reason for it; ``"control"`` for an unknown flag."""
        flag = self._flags.get(name)
        if flag is None:
            return TreatmentDecision(CONTROL, "not_found")
        return decide(name, flag, key, attributes)

    def get_treatment(
        self, name: str, key: str, attributes: Mapping[str, Any] | None = None
    ) -> str:
        """The treatment of ``key`` under flag ``name`` (``"control"`` if there is no such flag)."""
        return self.evaluate(name, key, attributes).treatment

    def is_treatment_on(
        self, name: str, key: str, attributes: Mapping[str, Any] | None = None
    ) -> bool:
        """Whether ``key`` gets the flag's "on" treatment (False for an unknown flag)."""
        flag = self._flags.get(name)
        if flag is None:
            return False
        return decide(name, flag, key, attributes).treatment == flag.on_treatment

    def get_config(self, name: str, treatment: str) -> dict[str, Any] | None:
        """The configuration attached to a treatment, if any (Split.io's "dynamic config")."""
        flag = self._flags.get(name)
        return None if flag is None else flag.configs.get(treatment)


__all__ = [
    "CONTROL",
    "Allocation",
    "Condition",
    "FeatureFlags",
    "FlagDefinition",
    "TargetingRule",
    "TreatmentDecision",
    "decide",
    "matches_all",
]
