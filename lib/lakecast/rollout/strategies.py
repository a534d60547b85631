"""Rollout strategies as data: the typed, JSON-serialisable state the registry stores.

The rollout controller writes a :class:`RolloutState`; streaming workers poll it and route
with :mod:`lakecast.rollout.router`. Every strategy is a pydantic model with
``extra="forbid"``; the union is discriminated on ``strategy`` so a stored document names
which one it is. Model references are ``"name:version"`` strings.
"""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, model_validator

from lakecast.rollout.flags import Condition

# An exact ``NAME:VERSION`` a rollout routes to (not a reference to resolve: no alias).
VersionRef = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]+:[A-Za-z0-9_.\-+]+$", strip_whitespace=True)
]
VariantName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]+$", max_length=64)]

DEFAULT_CANARY_STEPS = (5.0, 25.0, 50.0, 100.0)


def parse_model_ref(ref: str) -> tuple[str, str]:
    """``"churn:1.2.0"`` -> ``("churn", "1.2.0")``.

    Raises:
        ValueError: the reference is not ``name:version``.
    """
    name, sep, version = ref.rpartition(":")
    if not sep or not name or not version:
        msg = f"model reference {ref!r} is not of the form name:version"
        raise ValueError(msg)
    return name, version


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Variant(_Spec):
    """A named arm of a rollout and the model version that serves it."""

    name: VariantName
    model: VersionRef


class WeightedVariant(Variant):
    """A variant and its share of traffic, in percent."""

    weight: float = Field(ge=0, le=100)


class _Strategy(_Spec):
    """Fields every strategy has: the id that salts the buckets and the shadow models."""

    id: VariantName = Field(description="rollout / experiment id; salts the sticky buckets")
    shadows: tuple[VersionRef, ...] = ()
    shadow_percent: float = Field(default=100.0, ge=0, le=100)

    def variants(self) -> list[Variant]:  # pragma: no cover - every strategy overrides it
        raise NotImplementedError

    def baseline(self) -> Variant:
        """The variant everyone goes back to on a rollback."""
        return self.variants()[0]

    def variant(self, name: str) -> Variant:
        """The variant called ``name``.

        Raises:
            KeyError: the strategy has no such variant.
        """
        for variant in self.variants():
            if variant.name == name:
                return variant
        msg = f"rollout {self.id!r} has no variant {name!r}"
        raise KeyError(msg)

    @model_validator(mode="after")
    def _distinct_variants(self) -> _Strategy:
        names = [variant.name for variant in self.variants()]
        if len(set(names)) != len(names):
            msg = f"rollout {self.id!r}: variant names must be distinct, found {names}"
            raise ValueError(msg)
        return self


class BlueGreen(_Strategy):
    """Two full deployments; all traffic goes to the active one, switched at once."""

    strategy: Literal["blue_green"] = "blue_green"
    blue: VersionRef
    green: VersionRef
    active: Literal["blue", "green"] = "blue"

    def variants(self) -> list[Variant]:
        return [Variant(name="blue", model=self.blue), Variant(name="green", model=self.green)]

    def switched(self) -> BlueGreen:
        return self.model_copy(update={"active": "green" if self.active == "blue" else "blue"})


class Canary(_Strategy):
    """A candidate takes a growing share of sticky buckets, step by step, after analysis."""

    strategy: Literal["canary"] = "canary"
    champion: VersionRef
    candidate: VersionRef
    steps: tuple[float, ...] = DEFAULT_CANARY_STEPS
    step_index: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _steps_grow(self) -> Canary:
        steps = self.steps
        if not steps or any(not 0 < step <= 100 for step in steps):
            msg = f"canary {self.id!r}: steps must be percentages in (0, 100], found {list(steps)}"
            raise ValueError(msg)
        if any(later <= earlier for earlier, later in pairwise(steps)):
            msg = f"canary {self.id!r}: steps must strictly increase, found {list(steps)}"
            raise ValueError(msg)
        if self.step_index >= len(steps):
            msg = f"canary {self.id!r}: step_index {self.step_index} is past the {len(steps)} steps"
            raise ValueError(msg)
        return self

    def variants(self) -> list[Variant]:
        return [
            Variant(name="champion", model=self.champion),
            Variant(name="candidate", model=self.candidate),
        ]

    @property
    def percent(self) -> float:
        """The candidate's current share of traffic."""
        return self.steps[self.step_index]

    @property
    def at_last_step(self) -> bool:
        return self.step_index == len(self.steps) - 1

    def advanced(self) -> Canary:
        """The next step (the same spec at the last one)."""
        return self.model_copy(update={"step_index": min(self.step_index + 1, len(self.steps) - 1)})


def _weights_add_up(rollout_id: str, variants: list[WeightedVariant]) -> None:
    total = sum(variant.weight for variant in variants)
    if abs(total - 100.0) > 1e-6:
        msg = f"rollout {rollout_id!r}: variant weights must add up to 100, found {total:.6g}"
        raise ValueError(msg)


class ABTest(_Strategy):
    """A fixed split between variants for an experiment; the first variant is the control."""

    strategy: Literal["ab"] = "ab"
    split: list[WeightedVariant] = Field(min_length=2)

    @model_validator(mode="after")
    def _split_adds_up(self) -> ABTest:
        _weights_add_up(self.id, self.split)
        return self

    def variants(self) -> list[Variant]:
        return [Variant(name=v.name, model=v.model) for v in self.split]


class Shadow(_Strategy):
    """The champion serves; the shadow models score the same events, and nobody sees them."""

    strategy: Literal["shadow"] = "shadow"
    champion: VersionRef

    @model_validator(mode="after")
    def _has_shadows(self) -> Shadow:
        if not self.shadows:
            msg = f"shadow rollout {self.id!r} names no shadow models"
            raise ValueError(msg)
        return self

    def variants(self) -> list[Variant]:
        return [Variant(name="champion", model=self.champion)]


class ModelRule(_Spec):
    """Events whose attributes match every condition are served by this variant."""

    when: list[Condition] = Field(min_length=1)
    variant: Variant


class MultiModel(_Strategy):
    """Different models for different segments (device, country, ...): first matching rule wins."""

    strategy: Literal["multi_model"] = "multi_model"
    rules: list[ModelRule] = Field(min_length=1)
    default: Variant

    def variants(self) -> list[Variant]:
        seen: dict[str, Variant] = {self.default.name: self.default}
        for rule in self.rules:
            known = seen.setdefault(rule.variant.name, rule.variant)
            if known.model != rule.variant.model:
                msg = (
                    f"multi-model rollout {self.id!r}: variant {rule.variant.name!r} names "
                    f"both {known.model} and {rule.variant.model}"
                )
                raise ValueError(msg)
        return list(seen.values())

    @model_validator(mode="after")
    def _distinct_variants(self) -> MultiModel:
        # Several rules may share a variant; what must hold is one model per variant name.
        self.variants()
        return self


class Bandit(_Strategy):
    """Traffic shared by weights that the controller recomputes from a Thompson-sampling bandit.

    Between two weight updates the split is sticky like any other; ``weights`` (percent per
    variant name) default to an even split.
    """

    strategy: Literal["bandit"] = "bandit"
    arms: list[Variant] = Field(min_length=2)
    weights: dict[str, float] | None = None
    min_weight: float = Field(default=1.0, ge=0, le=50)

    @model_validator(mode="after")
    def _weights_match_arms(self) -> Bandit:
        if self.weights is None:
            return self
        names = {arm.name for arm in self.arms}
        if set(self.weights) != names:
            msg = (
                f"bandit {self.id!r}: weights name {sorted(self.weights)}, arms are {sorted(names)}"
            )
            raise ValueError(msg)
        _weights_add_up(
            self.id,
            [
                WeightedVariant(name=a.name, model=a.model, weight=self.weights[a.name])
                for a in self.arms
            ],
        )
        return self

    def variants(self) -> list[Variant]:
        return list(self.arms)

    def current_weights(self) -> dict[str, float]:
        """Percent per arm, in arm order."""
        if self.weights is None:
            return {arm.name: 100.0 / len(self.arms) for arm in self.arms}
        return {arm.name: self.weights[arm.name] for arm in self.arms}

    def with_weights(self, weights: dict[str, float]) -> Bandit:
        """The same bandit with new weights (shares of any scale), each at least ``min_weight`` %.

        Arms below the floor are lifted to it and the others share the rest in proportion,
        so a losing arm keeps a little traffic and its posterior keeps learning.

        Raises:
            ValueError: the weights do not name exactly the arms, or do not sum to a positive.
        """
        names = [arm.name for arm in self.arms]
        total = sum(weights.values())
        if set(weights) != set(names) or total <= 0 or min(weights.values()) < 0:
            msg = f"bandit {self.id!r}: weights {weights} must be non-negative, name {names}"
            raise ValueError(msg)
        floor = min(self.min_weight, 100.0 / len(names))
        shares = {name: 100.0 * weights[name] / total for name in names}
        floored: set[str] = set()
        while True:
            free = [name for name in names if name not in floored]
            room = 100.0 - floor * len(floored)
            free_total = sum(shares[name] for name in free)
            for name in free:
                shares[name] = room * shares[name] / free_total if free_total else room / len(free)
            below = {name for name in free if shares[name] < floor}
            if not below:
                break
            floored |= below
            for name in below:
                shares[name] = floor
        return Bandit.model_validate(self.model_dump() | {"weights": shares})


RolloutSpec = Annotated[
    BlueGreen | Canary | ABTest | Shadow | MultiModel | Bandit, Field(discriminator="strategy")
]

RolloutStatus = Literal["running", "paused", "promoted", "rolled_back"]


class RolloutState(_Spec):
    """What the registry stores for one model's rollout and the workers poll.

    ``revision`` grows with every change so a worker can tell a new state from the one it
    has. ``rolled_back`` sends all traffic to the baseline; ``promoted`` to ``winner``
    (for a canary or blue-green, the candidate / green one by default). ``paused`` routes
    as ``running`` does; only the controller stops advancing.
    """

    model: str = Field(min_length=1)
    revision: int = Field(default=0, ge=0)
    status: RolloutStatus = "running"
    winner: VariantName | None = None
    updated_at: datetime | None = None
    spec: RolloutSpec

    @model_validator(mode="after")
    def _winner_known(self) -> RolloutState:
        names = [variant.name for variant in self.spec.variants()]
        if self.winner is not None and self.winner not in names:
            msg = f"rollout {self.spec.id!r} has no variant {self.winner!r} (variants: {names})"
            raise ValueError(msg)
        if self.status == "promoted" and self.promoted_variant() is None:
            msg = f"rollout {self.spec.id!r} is promoted but names no winner"
            raise ValueError(msg)
        return self

    def promoted_variant(self) -> Variant | None:
        """The variant that won, for a promoted rollout."""
        if self.winner is not None:
            return self.spec.variant(self.winner)
        if isinstance(self.spec, Canary):
            return self.spec.variant("candidate")
        if isinstance(self.spec, BlueGreen):
            return self.spec.variant("green")
        return None

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> RolloutState:
        return cls.model_validate_json(text)

    def next_revision(self, **changes: Any) -> RolloutState:
        """A copy with ``changes`` applied (validated again) and the revision bumped."""
        data = self.model_dump() | changes | {"revision": self.revision + 1}
        return RolloutState.model_validate(data)


rollout_spec_adapter: TypeAdapter[Any] = TypeAdapter(RolloutSpec)


def parse_rollout_spec(data: Any) -> BlueGreen | Canary | ABTest | Shadow | MultiModel | Bandit:
    """A strategy from its plain-dict form; ``strategy`` says which."""
    spec: BlueGreen | Canary | ABTest | Shadow | MultiModel | Bandit = (
        rollout_spec_adapter.validate_python(data)
    )
    return spec
