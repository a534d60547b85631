"""`lakecast stream monitor|autoscaler`: bad settings are clear errors before anything starts."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from lakecast.cli.main import app
from lakecast.errors import ConfigError

runner = CliRunner()


def test_autoscaler_refuses_a_bad_policy_file_at_start(tmp_path: Path) -> None:
    policy = tmp_path / "autoscale.json"
    policy.write_text('{"min_replicas": 5, "max_replicas": 2}')
    result = runner.invoke(
        app, ["stream", "autoscaler", "--policy", str(policy), "--no-act", "--metrics-port", "0"]
    )
    assert isinstance(result.exception, ConfigError)
    message = str(result.exception)
    assert str(policy) in message
    assert "min_replicas (5) must not exceed max_replicas (2)" in message


def test_autoscaler_refuses_a_policy_that_is_not_json(tmp_path: Path) -> None:
    policy = tmp_path / "autoscale.json"
    policy.write_text('{"min_replicas": 1,,}')
    result = runner.invoke(app, ["stream", "autoscaler", "--policy", str(policy), "--no-act"])
    assert isinstance(result.exception, ConfigError)
    assert "not valid JSON" in str(result.exception)
    assert "line 1" in str(result.exception)


def test_monitor_refuses_an_unknown_detector_or_a_bad_param() -> None:
    result = runner.invoke(app, ["stream", "monitor", "--detector", "crystal_ball"])
    assert isinstance(result.exception, ConfigError)
    assert "'crystal_ball': unknown" in str(result.exception)
    result = runner.invoke(
        app, ["stream", "monitor", "--detector", "gaussian_tail", "--param", "colour=3"]
    )
    assert isinstance(result.exception, ConfigError)
    assert "colour" in str(result.exception)
    result = runner.invoke(app, ["stream", "monitor", "--param", "warmup"])
    assert result.exit_code == 2
    assert "NAME=VALUE" in result.output
