"""The autoscaling policy file: defaults, the shipped conf/autoscale.json, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from lakecast.autoscaling.policy import (
    DEFAULT_POLICY,
    AutoscalePolicy,
    load_policy,
    parse_policy,
)
from lakecast.errors import ConfigError


def write(tmp_path: Path, data: Any, name: str = "autoscale.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2))
    return path


def test_defaults_are_the_classic_cpu_policy_with_hpa_windows() -> None:
    policy = AutoscalePolicy()
    assert policy.scale_up_policy.metric_type == "CPUUtilization"
    assert policy.scale_up_policy.target_value == 70
    assert policy.scale_down_policy.metric_type == "CPUUtilization"
    assert policy.scale_down_policy.target_value == 30
    assert policy.tolerance == pytest.approx(0.1)
    assert policy.windows.scale_down_stabilization_s == 300
    assert policy.consumer_lag is not None
    assert policy.consumer_lag.activation_lag_threshold == 0


def test_shipped_policy_file_loads_with_its_values() -> None:
    raw = json.loads(DEFAULT_POLICY.read_text())
    policy = load_policy()
    assert policy.min_replicas == raw["min_replicas"]
    assert policy.max_replicas == raw["max_replicas"]
    assert policy.scale_up_policy.target_value == raw["scale_up_policy"]["target_value"]
    assert policy.scale_down_policy.action.adjustment == raw["scale_down_policy"]["action"].get(
        "adjustment"
    )
    assert policy.consumer_lag is not None
    assert policy.consumer_lag.lag_threshold == raw["consumer_lag"]["lag_threshold"]
    assert policy.windows.scale_down_stabilization_s == raw["windows"]["scale_down_stabilization_s"]


def test_small_windows_for_tests_and_partial_files_take_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, {"min_replicas": 0, "windows": {"scale_down_stabilization_s": 5}})
    policy = load_policy(path)
    assert policy.min_replicas == 0
    assert policy.windows.scale_down_stabilization_s == 5
    assert policy.windows.evaluation_interval_s == AutoscalePolicy().windows.evaluation_interval_s


def test_policy_is_frozen() -> None:
    policy = AutoscalePolicy()
    with pytest.raises(ValidationError):
        policy.min_replicas = 3  # type: ignore[misc]


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_policy(path)
    assert str(path) in str(info.value)


def test_bad_json_gives_line_and_column(tmp_path: Path) -> None:
    text = '{\n  "min_replicas": 1,\n  "max_replicas": ,\n}\n'
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    message = str(info.value)
    assert str(path) in message
    assert "not valid JSON" in message
    bad_line = text.splitlines().index('  "max_replicas": ,') + 1
    assert f"line {bad_line} column" in message


def test_wrong_type_names_the_field_and_the_value(tmp_path: Path) -> None:
    path = write(tmp_path, {"scale_up_policy": {"target_value": "high"}})
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    message = str(info.value)
    assert str(path) in message
    assert "scale_up_policy.target_value" in message
    assert "'high'" in message


@pytest.mark.parametrize(
    ("data", "field", "shown"),
    [
        ({"min_replicas": True}, "min_replicas", "True"),
        ({"max_replicas": "8"}, "max_replicas", "'8'"),
        ({"max_step": 2.5}, "max_step", "2.5"),
        ({"consumer_lag": {"lag_threshold": "100"}}, "consumer_lag.lag_threshold", "'100'"),
    ],
)
def test_types_are_strict_as_in_json(tmp_path: Path, data: Any, field: str, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_policy(write(tmp_path, data))
    message = str(info.value)
    assert f"{field}: " in message
    assert f"(found {shown})" in message


def test_unknown_key_names_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, {"scale_down_policy": {"target_value": 30, "cooldown": 60}})
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    message = str(info.value)
    assert "scale_down_policy.cooldown" in message
    assert "Extra inputs are not permitted" in message


def test_unknown_metric_type_lists_what_is_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, {"scale_up_policy": {"metric_type": "GPU", "target_value": 70}})
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    message = str(info.value)
    assert "scale_up_policy.metric_type" in message
    assert "CPUUtilization" in message
    assert "'GPU'" in message


def test_min_above_max_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, {"min_replicas": 5, "max_replicas": 2})
    with pytest.raises(ConfigError, match=r"min_replicas \(5\) must not exceed max_replicas \(2\)"):
        load_policy(path)


def test_missing_required_target_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, {"scale_up_policy": {"metric_type": "CPUUtilization"}})
    with pytest.raises(ConfigError, match=r"scale_up_policy\.target_value: Field required"):
        load_policy(path)


def test_negative_min_replicas_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, {"min_replicas": -1})
    with pytest.raises(ConfigError, match=r"min_replicas: .*greater than or equal to 0"):
        load_policy(path)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"scale_up_policy": {"target_value": 70, "action": {"type": "step"}}}, "non-zero"),
        (
            {"scale_up_policy": {"target_value": 70, "action": {"type": "step", "adjustment": -1}}},
            "scale_up_policy.action.adjustment must be positive",
        ),
        (
            {
                "scale_down_policy": {
                    "target_value": 30,
                    "action": {"type": "step", "adjustment": 2},
                }
            },
            "scale_down_policy.action.adjustment must be negative",
        ),
        (
            {"scale_up_policy": {"target_value": 40}, "scale_down_policy": {"target_value": 60}},
            "scale_down_policy.target_value (60.0) must not exceed",
        ),
        ({"consumer_lag": {"lag_threshold": 0}}, "consumer_lag.lag_threshold"),
        ({"tolerance": 1.5}, "tolerance"),
    ],
)
def test_incoherent_policies_are_refused(tmp_path: Path, data: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_policy(write(tmp_path, data))
    assert expected in str(info.value)


def test_top_level_must_be_an_object(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must hold a JSON object, found list"):
        load_policy(write(tmp_path, [1, 2]))


def test_lag_rule_can_be_switched_off() -> None:
    assert parse_policy({"consumer_lag": None}).consumer_lag is None


def test_the_seeds_policy_file_with_plain_action_words_loads(tmp_path: Path) -> None:
    seed = {
        "scale_up_policy": {
            "metric_type": "CPUUtilization",
            "target_value": 70,
            "action": "add_instance",
        },
        "scale_down_policy": {
            "metric_type": "CPUUtilization",
            "target_value": 30,
            "action": "remove_instance",
        },
    }
    policy = load_policy(write(tmp_path, seed))
    assert policy.scale_up_policy.action.type == "step"
    assert policy.scale_up_policy.action.adjustment == 1
    assert policy.scale_down_policy.action.type == "step"
    assert policy.scale_down_policy.action.adjustment == -1


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"scale_up_policy": {"target_value": 70, "action": "double_it"}},
            "scale_up_policy.action: Value error, unknown action 'double_it'",
        ),
        (
            {"scale_up_policy": {"target_value": 70, "action": "remove_instance"}},
            "scale_up_policy.action.adjustment must be positive",
        ),
    ],
)
def test_plain_action_words_are_checked(tmp_path: Path, data: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_policy(write(tmp_path, data))
    assert expected in str(info.value)
