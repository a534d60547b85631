"""An OpenFeature provider over :class:`FeatureFlags`, so any OpenFeature client sees our flags.

    from openfeature import api
    api.set_provider(LakecastFlagProvider(flags))
    context = EvaluationContext("user-42", {"device": "ios"})
    api.get_client().get_string_value("new-model", "off", context)

The targeting key is the bucketing key; the context's attributes feed the targeting rules.
Booleans are "is the treatment the flag's on-treatment", strings are the treatment itself,
objects are the treatment's config. Numbers have no meaning for a treatment and answer a
type mismatch (the client then returns the caller's default).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider, Metadata

from lakecast.rollout.flags import FeatureFlags, TreatmentDecision

if TYPE_CHECKING:
    from openfeature.evaluation_context import EvaluationContext
    from openfeature.flag_evaluation import FlagValueType

V = TypeVar("V")

_REASONS: dict[str, Reason] = {
    "killed": Reason.DISABLED,
    "targeting_match": Reason.TARGETING_MATCH,
    "split": Reason.SPLIT,
    "default": Reason.DEFAULT,
}


class LakecastFlagProvider(AbstractProvider):
    """Evaluates lakecast flags locally (no network), with the same buckets as the worker."""

    def __init__(self, flags: FeatureFlags) -> None:
        super().__init__()
        self._flags = flags

    def get_metadata(self) -> Metadata:
        return Metadata(name="lakecast")

    def _decide(
        self, flag_key: str, evaluation_context: EvaluationContext | None
    ) -> TreatmentDecision | FlagResolutionDetails[Any]:
        if self._flags.definition(flag_key) is None:
            return FlagResolutionDetails(
                value=None,
                reason=Reason.ERROR,
                error_code=ErrorCode.FLAG_NOT_FOUND,
                error_message=f"flag {flag_key!r} is not defined in lakecast's flag set",
            )
        key = evaluation_context.targeting_key if evaluation_context else None
        if not key:
            return FlagResolutionDetails(
                value=None,
                reason=Reason.ERROR,
                error_code=ErrorCode.TARGETING_KEY_MISSING,
                error_message=f"flag {flag_key!r}: the evaluation context has no targeting key",
            )
        attributes = dict(evaluation_context.attributes) if evaluation_context else {}
        return self._flags.evaluate(flag_key, key, attributes)

    def _resolve(
        self,
        flag_key: str,
        default_value: V,
        evaluation_context: EvaluationContext | None,
        value_of: Callable[[str, TreatmentDecision], Any],
    ) -> FlagResolutionDetails[V]:
        decision = self._decide(flag_key, evaluation_context)
        if isinstance(decision, FlagResolutionDetails):
            decision.value = default_value
            return decision
        value = value_of(flag_key, decision)
        if value is None:
            return FlagResolutionDetails(
                value=default_value,
                reason=Reason.ERROR,
                error_code=ErrorCode.TYPE_MISMATCH,
                error_message=(
                    f"flag {flag_key!r}: treatment {decision.treatment!r} has no value of that type"
                ),
                variant=decision.treatment,
            )
        metadata: dict[str, bool | int | float | str] = {}
        if decision.bucket is not None:
            metadata["bucket"] = decision.bucket
        if decision.rule_index is not None:
            metadata["rule"] = decision.rule_index
        return FlagResolutionDetails(
            value=value,
            reason=_REASONS[decision.reason],
            variant=decision.treatment,
            flag_metadata=metadata,
        )

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        def is_on(name: str, decision: TreatmentDecision) -> bool:
            definition = self._flags.definition(name)
            return definition is not None and decision.treatment == definition.on_treatment

        return self._resolve(flag_key, default_value, evaluation_context, is_on)

    def resolve_string_details(
        self,
        flag_key: str,
        default_value: str,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[str]:
        return self._resolve(
            flag_key, default_value, evaluation_context, lambda _name, decision: decision.treatment
        )

    def resolve_integer_details(
        self,
        flag_key: str,
        default_value: int,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, evaluation_context, lambda _n, _d: None)

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, default_value, evaluation_context, lambda _n, _d: None)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        return self._resolve(
            flag_key,
            default_value,
            evaluation_context,
            lambda name, decision: self._flags.get_config(name, decision.treatment),
        )
