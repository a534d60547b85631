from __future__ import annotations

from pathlib import Path

import pytest

from lakecast.config import DEFAULT_CONFIG, load_settings
from lakecast.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lakecast.yaml"
    path.write_text(text)
    return path


def test_the_shipped_config_is_valid() -> None:
    cfg = load_settings(DEFAULT_CONFIG, environ={})
    assert cfg.kafka.topics.dlq == "events.dlq"
    assert cfg.lake.root.endswith("/lake")
    assert cfg.registry_root == cfg.lake.root + "/registry"
    assert cfg.kafka.client_options()["security_protocol"] == "PLAINTEXT"


def test_a_wrong_type_names_the_file_and_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, "kafka:\n  partitions: many\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    message = str(caught.value)
    assert str(path) in message
    assert "kafka.partitions" in message
    assert "'many'" in message


def test_an_unknown_key_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "kafka:\n  bootstrap_server: typo:9092\n")
    with pytest.raises(ConfigError, match=r"kafka\.bootstrap_server: Extra inputs"):
        load_settings(path, environ={})


def test_a_missing_file_says_which(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=f"{missing} does not exist"):
        load_settings(missing, environ={})


def test_invalid_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "kafka: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(path, environ={})


def test_environment_overrides_nested_fields(tmp_path: Path) -> None:
    path = write(tmp_path, "kafka:\n  bootstrap_servers: a:1\n")
    env = {
        "LAKECAST__KAFKA__BOOTSTRAP_SERVERS": "b:2,c:3",
        "LAKECAST__LOCAL__BROKER_PORT": "19092",
        "LAKECAST__LAKE__ROOT": "s3a://bucket/lake",
    }
    cfg = load_settings(path, environ=env)
    assert cfg.kafka.client_options()["bootstrap_servers"] == ["b:2", "c:3"]
    assert cfg.local.broker_port == 19092
    assert cfg.lake.root == "s3a://bucket/lake"
    assert cfg.lake.table("events") == "s3a://bucket/lake/events"


def test_a_bad_environment_override_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "{}\n")
    with pytest.raises(ConfigError, match=r"local\.broker_port"):
        load_settings(path, environ={"LAKECAST__LOCAL__BROKER_PORT": "not-a-port"})


def test_sasl_needs_a_mechanism_and_credentials(tmp_path: Path) -> None:
    path = write(tmp_path, "kafka:\n  security:\n    protocol: SASL_SSL\n")
    with pytest.raises(ConfigError, match=r"needs security\.sasl_mechanism"):
        load_settings(path, environ={})
    path = write(
        tmp_path,
        "kafka:\n  security:\n    protocol: SASL_SSL\n    sasl_mechanism: SCRAM-SHA-512\n"
        "    sasl_username: svc\n    sasl_password: s3cret\n",
    )
    cfg = load_settings(path, environ={})
    options = cfg.kafka.client_options()
    assert options["sasl_plain_password"] == "s3cret"
    assert "s3cret" not in repr(cfg)


def test_fetch_wait_must_stay_below_the_request_timeout(tmp_path: Path) -> None:
    path = write(tmp_path, "kafka:\n  fetch_max_wait_ms: 40000\n  request_timeout_ms: 30000\n")
    with pytest.raises(ConfigError, match="fetch_max_wait_ms"):
        load_settings(path, environ={})


def test_the_heartbeat_must_come_within_the_session_timeout(tmp_path: Path) -> None:
    path = write(tmp_path, "kafka:\n  session_timeout_ms: 6000\n  heartbeat_interval_ms: 6000\n")
    with pytest.raises(ConfigError, match="heartbeat_interval_ms"):
        load_settings(path, environ={})


def test_a_group_instance_id_kafka_would_refuse_is_refused_here(tmp_path: Path) -> None:
    path = write(tmp_path, "kafka:\n  group_instance_id: worker 0\n")
    with pytest.raises(ConfigError, match=r"kafka\.group_instance_id"):
        load_settings(path, environ={})
