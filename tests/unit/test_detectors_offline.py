"""Offline scoring of a timestamp,value CSV, through the library and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lakecast.cli.anomaly import app
from lakecast.errors import SchemaError
from lakecast.monitoring.offline import score_csv


def write_series(path: Path, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    values = 5 + 0.2 * rng.standard_normal(n)
    values[220] = 12.0
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-03-01", periods=n, freq="5min").strftime(
                "%Y-%m-%d %H:%M:%S"
            ),
            "value": values,
        }
    )
    frame.to_csv(path, index=False)
    return frame


def test_cli_score_writes_one_score_per_row(tmp_path: Path) -> None:
    source, target = tmp_path / "in.csv", tmp_path / "out" / "scored.csv"
    frame = write_series(source)
    result = CliRunner().invoke(
        app, ["score", str(source), "--out", str(target), "--detector", "gaussian_tail"]
    )
    assert result.exit_code == 0, result.output
    scored = pd.read_csv(target)
    assert list(scored.columns) == ["timestamp", "value", "anomaly_score"]
    assert scored["timestamp"].tolist() == frame["timestamp"].tolist()
    assert scored["anomaly_score"].between(0, 1).all()
    assert scored["anomaly_score"].idxmax() == 220


def test_scoring_a_prefix_file_gives_the_prefix_of_the_scores(tmp_path: Path) -> None:
    frame = write_series(tmp_path / "full.csv")
    frame.head(230).to_csv(tmp_path / "head.csv", index=False)
    score_csv(tmp_path / "full.csv", tmp_path / "full_out.csv", detector="knn_cad")
    score_csv(tmp_path / "head.csv", tmp_path / "head_out.csv", detector="knn_cad")
    full = pd.read_csv(tmp_path / "full_out.csv")["anomaly_score"]
    head = pd.read_csv(tmp_path / "head_out.csv")["anomaly_score"]
    np.testing.assert_array_equal(head.to_numpy(), full.head(230).to_numpy())


def test_missing_value_column_is_a_schema_error(tmp_path: Path) -> None:
    source = tmp_path / "bad.csv"
    pd.DataFrame({"timestamp": ["2024-01-01 00:00:00"], "metric": [1.0]}).to_csv(source)
    with pytest.raises(SchemaError, match="value"):
        score_csv(source, tmp_path / "out.csv")
