"""`lakecast models ...` against a real registry in a temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from lakecast.cli.main import app
from lakecast.registry import ModelCard, Registry, Signature

SIG = Signature.of(["a", "b"])


@pytest.fixture
def root(tmp_path: Path) -> str:
    registry = Registry(tmp_path / "registry")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 2))
    y = (x[:, 0] > 0).astype(int)
    card = ModelCard(intended_use="Rank products for a **session**.", factors="device, country")
    registry.register(
        "ctr", LogisticRegression().fit(x, y), signature=SIG, metrics={"auc": 0.75}, card=card
    )
    registry.register(
        "ctr", LogisticRegression(C=0.1).fit(x, y), signature=SIG, metrics={"auc": 0.77}
    )
    return registry.root


def _run(root: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["models", "--root", root, *args])
    return result.exit_code, result.output


def test_list_and_show(root: str) -> None:
    code, out = _run(root, "list")
    assert code == 0
    assert "ctr" in out
    assert "1.1.0" in out
    code, out = _run(root, "show", "ctr:1.0.0", "--json")
    assert code == 0
    shown = json.loads(out)
    assert (shown["version"], shown["metrics"], shown["flavor"]) == (
        "1.0.0",
        {"auc": 0.75},
        "sklearn",
    )
    assert [c["name"] for c in shown["signature"]["inputs"]] == ["a", "b"]


def test_card_renders_markdown(root: str) -> None:
    code, out = _run(root, "card", "ctr:1.0.0", "--raw")
    assert code == 0
    assert "# Model card: ctr 1.0.0" in out
    assert "## Intended use" in out
    assert "Rank products for a **session**." in out
    code, out = _run(root, "card", "ctr:1.0.0")
    assert code == 0
    assert "Intended use" in out
    assert "**session**" not in out  # rendered, not the source


def test_promote_rollback_and_audit_record_who_and_why(
    root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USER", "dana")
    assert _run(root, "promote", "ctr", "1.0.0", "--alias", "champion", "--reason", "first")[0] == 0
    code, out = _run(root, "promote", "ctr", "1.1.0", "--alias", "champion", "--reason", "auc up")
    assert (code, out.strip()) == (0, "ctr@champion -> 1.1.0 (was 1.0.0)")
    code, out = _run(root, "rollback", "ctr", "--alias", "champion", "--reason", "errors up")
    assert (code, out.strip()) == (0, "ctr@champion -> 1.0.0")
    entries = [e for e in Registry(root).audit("ctr") if e.alias == "champion"]
    assert [(e.action, e.version, e.who, e.reason) for e in entries] == [
        ("promote", "1.0.0", "dana", "first"),
        ("promote", "1.1.0", "dana", "auc up"),
        ("rollback", "1.0.0", "dana", "errors up"),
    ]
    code, out = _run(root, "audit", "ctr")
    assert code == 0
    assert "rollback" in out


def test_verify_fails_after_tampering(root: str) -> None:
    code, out = _run(root, "verify", "ctr")
    assert code == 0
    assert out.count("ok ") == 2
    path = Path(Registry(root).resolve("ctr:1.0.0").artifact_path)
    path.write_bytes(path.read_bytes()[:-1])
    code, out = _run(root, "verify", "ctr")
    assert code == 1
    assert "FAIL ctr:1.0.0" in out
    assert "ok   ctr:1.1.0" in out


def test_unknown_model_is_one_clear_error(root: str) -> None:
    result = CliRunner().invoke(app, ["models", "--root", root, "show", "nope"])
    assert result.exit_code != 0
    assert "model 'nope' is not registered" in str(result.exception)
