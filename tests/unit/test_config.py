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


def test_plain_sasl_without_tls_is_refused_unless_allowed(tmp_path: Path) -> None:
    base = (
        "kafka:\n  security:\n    protocol: SASL_PLAINTEXT\n    sasl_mechanism: PLAIN\n"
        "    sasl_username: svc\n    sasl_password: s3cret\n"
    )
    with pytest.raises(ConfigError, match="sends the password in clear") as caught:
        load_settings(write(tmp_path, base), environ={})
    assert "s3cret" not in str(caught.value)
    cfg = load_settings(write(tmp_path, base + "    allow_plaintext_sasl: true\n"), environ={})
    assert cfg.kafka.client_options()["security_protocol"] == "SASL_PLAINTEXT"
    # SCRAM never sends the password itself: it needs no such consent.
    scram = base.replace("PLAIN\n", "SCRAM-SHA-512\n", 1)
    assert load_settings(write(tmp_path, scram), environ={}).kafka.security.sasl_mechanism == (
        "SCRAM-SHA-512"
    )


def test_no_hostname_check_logs_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = "kafka:\n  security:\n    protocol: SSL\n    ssl_check_hostname: false\n"
    path = write(tmp_path, text)
    with caplog.at_level("WARNING", logger="lakecast.config"):
        cfg = load_settings(path, environ={})
    assert cfg.kafka.client_options()["ssl_check_hostname"] is False
    assert [r.getMessage() for r in caplog.records if "ssl_check_hostname is false" in r.message]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("kafka:\n  security:\n    sasl_pasword: hunter2\n", "kafka.security.sasl_pasword"),
        ("kafka:\n  security:\n    sasl_password: [hunter2]\n", "kafka.security.sasl_password"),
        ("kafka:\n  api_token: hunter2\n", "kafka.api_token"),
        ("kafka:\n  security:\n    ssl_keyfile: [hunter2]\n", "kafka.security.ssl_keyfile"),
        ("serving:\n  client_secret: hunter2\n", "serving.client_secret"),
    ],
)
def test_a_config_error_never_shows_a_secret_or_unknown_value(
    tmp_path: Path, text: str, field: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text), environ={})
    message = str(caught.value)
    assert field in message
    assert "hunter2" not in message
    assert "value not shown" in message


def test_a_secret_from_the_environment_is_not_shown_either(tmp_path: Path) -> None:
    env = {"LAKECAST__KAFKA__SECURITY__SASL_PASSWROD": "hunter2"}
    with pytest.raises(ConfigError, match=r"sasl_passwrod") as caught:
        load_settings(write(tmp_path, "{}\n"), environ=env)
    assert "hunter2" not in str(caught.value)


def test_invalid_yaml_does_not_quote_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "kafka:\n  security:\n    sasl_password: 'hunter2\n")
    with pytest.raises(ConfigError, match=r"not valid YAML: .* at line \d+") as caught:
        load_settings(path, environ={})
    assert "hunter2" not in str(caught.value)


def test_the_password_can_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "svc.password"
    secret.write_text("s3cret\n")
    text = (
        "kafka:\n  security:\n    protocol: SASL_SSL\n    sasl_mechanism: SCRAM-SHA-512\n"
        f"    sasl_username: svc\n    sasl_password_file: {secret}\n"
    )
    cfg = load_settings(write(tmp_path, text), environ={})
    assert cfg.kafka.client_options()["sasl_plain_password"] == "s3cret"
    assert "s3cret" not in repr(cfg)
    secret.unlink()
    with pytest.raises(ConfigError, match=r"sasl_password_file .*svc\.password: cannot read"):
        cfg.kafka.client_options()


def test_one_reader_for_every_secret_file(tmp_path: Path) -> None:
    from lakecast.config.base import PROJECT_ROOT, read_secret_file

    secret = tmp_path / "p"
    secret.write_text(" two words \r\n")  # the line ending goes, the spaces are the password's
    assert read_secret_file(str(secret), "x.password_file") == " two words "
    secret.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match=r"^x\.password_file .*: cannot read it \(not UTF-8"):
        read_secret_file(str(secret), "x.password_file")
    secret.write_text("\n")
    with pytest.raises(ConfigError, match=r"^x\.password_file .* is empty$"):
        read_secret_file(str(secret), "x.password_file")
    with pytest.raises(ConfigError, match=str(PROJECT_ROOT / "no" / "such")):
        read_secret_file("no/such", "x.password_file")  # relative: under the project root


def test_a_password_and_a_password_file_are_not_both_given(tmp_path: Path) -> None:
    text = (
        "kafka:\n  security:\n    protocol: SASL_SSL\n    sasl_mechanism: SCRAM-SHA-512\n"
        "    sasl_username: svc\n    sasl_password: a\n    sasl_password_file: /x\n"
    )
    with pytest.raises(ConfigError, match="not both"):
        load_settings(write(tmp_path, text), environ={})


def test_overlays_are_merged_over_the_config_file(tmp_path: Path) -> None:
    base = write(tmp_path, "kafka:\n  bootstrap_servers: a:1\n  partitions: 3\n")
    overlay = tmp_path / "worker.yaml"
    overlay.write_text("kafka:\n  bootstrap_servers: b:2\n  security:\n    protocol: SSL\n")
    env = {"LAKECAST_CONFIG_OVERLAY": str(overlay)}
    cfg = load_settings(base, environ=env)
    assert cfg.kafka.bootstrap_servers == "b:2"
    assert cfg.kafka.partitions == 3
    assert cfg.kafka.security.protocol == "SSL"
    overlay.write_text("kafka:\n  partitions: zero\n")
    with pytest.raises(ConfigError, match=f"overlay {overlay}"):
        load_settings(base, environ=env)
