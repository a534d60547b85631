"""Feature flags: allocations by bucket range, targeting, kill switch, OpenFeature."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from pydantic import ValidationError

from lakecast.rollout.bucketing import bucket
from lakecast.rollout.flags import CONTROL, Allocation, FeatureFlags, FlagDefinition
from lakecast.rollout.openfeature_provider import LakecastFlagProvider

KEYS = [f"user-{i}" for i in range(5_000)]


def _rollout(percent: float) -> FeatureFlags:
    return FeatureFlags.from_dict(
        {"new-model": {"allocations": [{"treatment": "on", "percent": percent}]}}
    )


def test_treatment_follows_the_bucket_range() -> None:
    flags = _rollout(10)
    for key in KEYS[:2_000]:
        expected = "on" if bucket("new-model", key) < 1_000 else "off"
        assert flags.get_treatment("new-model", key) == expected
        assert flags.is_treatment_on("new-model", key) is (expected == "on")


def test_same_key_same_treatment() -> None:
    flags = _rollout(50)
    first = [flags.get_treatment("new-model", key) for key in KEYS]
    assert first == [flags.get_treatment("new-model", key) for key in KEYS]
    share = first.count("on") / len(first)
    assert 0.45 < share < 0.55


def test_raising_the_percentage_only_adds_keys() -> None:
    at_10 = {k for k in KEYS if _rollout(10).is_treatment_on("new-model", k)}
    at_20 = {k for k in KEYS if _rollout(20).is_treatment_on("new-model", k)}
    assert at_10 < at_20
    assert abs(len(at_20) / len(KEYS) - 0.20) < 0.03


def test_several_treatments_split_the_buckets() -> None:
    flags = FeatureFlags(
        {
            "layout": FlagDefinition(
                allocations=[
                    Allocation(treatment="a", percent=30),
                    Allocation(treatment="b", percent=30),
                ],
                default_treatment="c",
            )
        }
    )
    seen = [flags.get_treatment("layout", k) for k in KEYS]
    for name, share in (("a", 0.3), ("b", 0.3), ("c", 0.4)):
        assert abs(seen.count(name) / len(seen) - share) < 0.03


def test_targeting_rule_on_attributes_wins_over_the_split() -> None:
    flags = FeatureFlags.from_dict(
        {
            "new-model": {
                "rules": [
                    {
                        "when": [{"attribute": "device", "op": "eq", "value": "ios"}],
                        "allocations": [{"treatment": "on", "percent": 100}],
                    },
                    {
                        "when": [{"attribute": "country", "op": "in", "value": ["FR", "DE"]}],
                        "allocations": [{"treatment": "off", "percent": 100}],
                    },
                ],
                "allocations": [{"treatment": "on", "percent": 10}],
            }
        }
    )
    ios = [flags.get_treatment("new-model", k, {"device": "ios"}) for k in KEYS[:500]]
    assert set(ios) == {"on"}
    fr = [flags.get_treatment("new-model", k, {"country": "FR"}) for k in KEYS[:500]]
    assert set(fr) == {"off"}
    decision = flags.evaluate("new-model", "user-1", {"device": "ios", "country": "FR"})
    assert (decision.treatment, decision.reason, decision.rule_index) == (
        "on",
        "targeting_match",
        0,
    )
    # Without a matching attribute the 10 % split applies.
    android = [flags.get_treatment("new-model", k, {"device": "android"}) for k in KEYS]
    assert 0.07 < android.count("on") / len(android) < 0.13


def test_comparison_operators_and_missing_attributes() -> None:
    flags = FeatureFlags.from_dict(
        {
            "big-spenders": {
                "rules": [
                    {
                        "when": [{"attribute": "price", "op": "gte", "value": 100}],
                        "allocations": [{"treatment": "on", "percent": 100}],
                    }
                ]
            }
        }
    )
    assert flags.get_treatment("big-spenders", "u", {"price": 150}) == "on"
    assert flags.get_treatment("big-spenders", "u", {"price": 99.5}) == "off"
    assert flags.get_treatment("big-spenders", "u", {"price": "lots"}) == "off"
    assert flags.get_treatment("big-spenders", "u") == "off"


def test_kill_switch_sends_everyone_to_the_default() -> None:
    flags = _rollout(100)
    assert flags.is_treatment_on("new-model", "user-7")
    flags.kill("new-model")
    assert {flags.get_treatment("new-model", k) for k in KEYS[:300]} == {"off"}
    assert flags.evaluate("new-model", "user-7").reason == "killed"


def test_unknown_flag_is_control() -> None:
    flags = _rollout(50)
    assert flags.get_treatment("nope", "user-1") == CONTROL
    assert flags.is_treatment_on("nope", "user-1") is False


def test_invalid_definitions_are_refused() -> None:
    with pytest.raises(ValidationError, match="more than 100"):
        FeatureFlags.from_dict(
            {
                "x": {
                    "allocations": [
                        {"treatment": "a", "percent": 70},
                        {"treatment": "b", "percent": 40},
                    ]
                }
            }
        )
    with pytest.raises(ValidationError, match="needs a list"):
        FeatureFlags.from_dict(
            {
                "x": {
                    "rules": [
                        {
                            "when": [{"attribute": "d", "op": "in", "value": "ios"}],
                            "allocations": [{"treatment": "on", "percent": 100}],
                        }
                    ]
                }
            }
        )
    with pytest.raises(ValidationError, match="extra"):
        FeatureFlags.from_dict({"x": {"allocation": []}})


def test_flags_round_trip_through_their_plain_form() -> None:
    flags = _rollout(25)
    again = FeatureFlags.from_dict(flags.to_dict())
    assert [again.get_treatment("new-model", k) for k in KEYS[:1000]] == [
        flags.get_treatment("new-model", k) for k in KEYS[:1000]
    ]


@pytest.fixture
def openfeature_flags() -> Iterator[FeatureFlags]:
    flags = FeatureFlags.from_dict(
        {
            "new-model": {
                "allocations": [{"treatment": "on", "percent": 30}],
                "rules": [
                    {
                        "when": [{"attribute": "device", "op": "eq", "value": "ios"}],
                        "allocations": [{"treatment": "on", "percent": 100}],
                    }
                ],
                "configs": {"on": {"model": "churn:2.0.0"}},
            }
        }
    )
    api.set_provider(LakecastFlagProvider(flags))
    yield flags
    api.clear_providers()


def test_openfeature_client_sees_the_same_treatments(openfeature_flags: FeatureFlags) -> None:
    client = api.get_client()
    for key in KEYS[:1000]:
        context = EvaluationContext(targeting_key=key, attributes={"device": "android"})
        expected = openfeature_flags.get_treatment("new-model", key, {"device": "android"})
        assert client.get_string_value("new-model", "fallback", context) == expected
        assert client.get_boolean_value("new-model", False, context) is (expected == "on")


def test_openfeature_details_carry_variant_and_reason(openfeature_flags: FeatureFlags) -> None:
    client = api.get_client()
    ios = client.get_string_details("new-model", "x", EvaluationContext("u1", {"device": "ios"}))
    assert (ios.value, ios.variant, ios.reason) == ("on", "on", Reason.TARGETING_MATCH)
    key = next(k for k in KEYS if not openfeature_flags.is_treatment_on("new-model", k))
    split = client.get_string_details("new-model", "x", EvaluationContext(key))
    assert (split.value, split.reason) == ("off", Reason.DEFAULT)
    assert split.flag_metadata["bucket"] == bucket("new-model", key)
    config = client.get_object_value("new-model", {}, EvaluationContext("u1", {"device": "ios"}))
    assert config == {"model": "churn:2.0.0"}


def test_openfeature_errors_return_the_callers_default(openfeature_flags: FeatureFlags) -> None:
    client = api.get_client()
    missing = client.get_string_details("unknown-flag", "dflt", EvaluationContext("u1"))
    assert (missing.value, missing.error_code) == ("dflt", ErrorCode.FLAG_NOT_FOUND)
    no_key = client.get_string_details("new-model", "dflt", EvaluationContext())
    assert (no_key.value, no_key.error_code) == ("dflt", ErrorCode.TARGETING_KEY_MISSING)
    number = client.get_integer_details("new-model", 7, EvaluationContext("u1"))
    assert (number.value, number.error_code) == (7, ErrorCode.TYPE_MISMATCH)


def test_openfeature_reports_a_killed_flag_as_disabled(openfeature_flags: FeatureFlags) -> None:
    openfeature_flags.kill("new-model")
    details = api.get_client().get_string_details(
        "new-model", "x", EvaluationContext("u1", {"device": "ios"})
    )
    assert (details.value, details.reason) == ("off", Reason.DISABLED)
