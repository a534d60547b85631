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
    # These versions have no holdout metric and 1.1.0 no card: only --force moves the alias.
    forced = ("--force", "--reason")
    assert _run(root, "promote", "ctr", "1.0.0", "--alias", "champion", *forced, "first")[0] == 0
    code, out = _run(root, "promote", "ctr", "1.1.0", "--alias", "champion", *forced, "auc up")
    assert code == 0
    assert out.strip().endswith("ctr@champion -> 1.1.0 (was 1.0.0) FORCED past failed gates")
    code, out = _run(root, "rollback", "ctr", "--alias", "champion", "--reason", "errors up")
    assert (code, out.strip()) == (0, "ctr@champion -> 1.0.0")
    entries = [e for e in Registry(root).audit("ctr") if e.alias == "champion"]
    assert [(e.action, e.version, e.who) for e in entries] == [
        ("promote", "1.0.0", "dana"),
        ("promote", "1.1.0", "dana"),
        ("rollback", "1.0.0", "dana"),
    ]
    first, second, back = (e.reason for e in entries)
    assert first.startswith("FORCED past failed gates (") and first.endswith("): first")
    assert "holdout_minimum: ctr:1.0.0: holdout metric 'holdout_roc_auc' missing" in first
    assert "model_card_complete: ctr:1.1.0: model card is missing" in second
    assert second.endswith("): auc up")
    assert back == "errors up"
    code, out = _run(root, "audit", "ctr")
    assert code == 0
    assert "rollback" in out


def _gated_registry(tmp_path: Path, aucs: tuple[float, ...] = (0.70, 0.71, 0.65)) -> Registry:
    """Versions with complete cards and holdout AUCs 0.70, 0.71 (non-inferior) and 0.65
    (refused against 0.71 with the configured 0.005 margin)."""
    from lakecast.rollout.gates import DEFAULT_CARD_FIELDS

    registry = Registry(tmp_path / f"gated-{len(aucs)}")
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 2))
    y = (x[:, 0] > 0).astype(int)
    card = ModelCard(**{name: f"some {name}" for name in DEFAULT_CARD_FIELDS})
    for i, auc in enumerate(aucs):
        registry.register(
            "ctr",
            # Another C each: the same model would be the same artifact, a patch version.
            LogisticRegression(C=1.0 + i).fit(x, y),
            signature=SIG,
            metrics={"holdout_roc_auc": auc, "batch_latency_ms": 1.0},
            card=card,
        )
    return registry


def test_promote_runs_the_gates_unless_forced_with_a_reason(tmp_path: Path) -> None:
    root = _gated_registry(tmp_path).root
    code, out = _run(root, "promote", "ctr", "1.0.0", "--alias", "champion", "--reason", "v1")
    assert code == 0
    assert "pass holdout_minimum: ctr:1.0.0: holdout_roc_auc 0.7, must be at least 0.6" in out
    code, out = _run(root, "promote", "ctr", "1.1.0", "--alias", "champion")
    assert (code, out.splitlines()[-1]) == (0, "ctr@champion -> 1.1.0 (was 1.0.0)")
    result = CliRunner().invoke(app, ["models", "--root", root, "promote", "ctr", "1.2.0",
                                      "--alias", "champion"])  # fmt: skip
    assert result.exit_code == 1
    assert "refused by the gates: holdout_metric: ctr:1.2.0: holdout_roc_auc 0.65" in str(
        result.exception
    )
    assert Registry(root).resolve("ctr@champion").version == "1.1.0"
    result = CliRunner().invoke(
        app, ["models", "--root", root, "promote", "ctr", "1.2.0", "--alias", "champion", "--force"]
    )
    assert "--force needs --reason TEXT" in str(result.exception)
    code, out = _run(root, "promote", "ctr", "1.2.0", "--alias", "champion", "--force",
                     "--reason", "incident 42: 1.1.0 times out")  # fmt: skip
    assert code == 0
    assert "FAIL holdout_metric" in out
    last = Registry(root).audit("ctr")[-1]
    assert (last.action, last.version, last.previous_version) == ("promote", "1.2.0", "1.1.0")
    assert last.reason.startswith("FORCED past failed gates (holdout_metric: ctr:1.2.0")
    assert last.reason.endswith("): incident 42: 1.1.0 times out")


def test_jobs_train_champion_goes_through_the_same_gates(tmp_path: Path) -> None:
    from lakecast.errors import RolloutError
    from lakecast.models.training_run import REFUSED, promote_champion

    weak = _gated_registry(tmp_path, (0.55,))
    with pytest.raises(RolloutError, match=r"no first champion: .*holdout_roc_auc 0\.55, must be"):
        promote_champion(weak, "ctr", "1.0.0", "trained")
    assert "champion" not in weak.aliases("ctr")
    registry = _gated_registry(tmp_path)
    assert promote_champion(registry, "ctr", "1.0.0", "v1") == (
        "model_card_complete pass; holdout_minimum pass"
    )
    assert promote_champion(registry, "ctr", "1.1.0", "v2").startswith("signature_compatible pass")
    refused = promote_champion(registry, "ctr", "1.2.0", "v3")
    assert refused.startswith(f"{REFUSED}: promote ctr:1.2.0 to ctr@champion refused by the gates")
    assert registry.resolve("ctr@champion").version == "1.1.0"  # the live one keeps serving


def test_verify_reports_the_libraries_a_version_was_trained_with(tmp_path: Path) -> None:
    from lakecast.registry import Lineage
    from lakecast.registry.environment import compare_libraries, library_versions

    registry = Registry(tmp_path / "libs")
    x = np.random.default_rng(3).normal(size=(30, 2))
    model = LogisticRegression().fit(x, (x[:, 1] > 0).astype(int))
    here = library_versions()
    older = {**here, "scikit-learn": "0.24.2"}
    registry.register("ctr", model, signature=SIG, lineage=Lineage(libraries=here))
    registry.register("ctr", model, signature=SIG, lineage=Lineage(libraries=older))
    registry.register("ctr", model, signature=SIG, lineage=Lineage(libraries={}))  # pre-18
    code, out = _run(registry.root, "verify", "ctr")
    assert code == 0  # a library difference warns, it does not fail verification
    lines = out.splitlines()
    assert lines[1].strip() == "libraries: same major.minor as trained"
    assert lines[3].strip() == (
        f"libraries DIFFER: scikit-learn trained with 0.24.2, {here['scikit-learn']} here"
    )
    assert lines[5].strip().startswith("libraries: unknown")
    # A patch release is the same library; a missing one differs.
    checks = compare_libraries({**here, "numpy": here["numpy"] + ".post9"}, here)
    assert {c.status for c in checks} == {"same"}
    show = json.loads(_run(registry.root, "show", "ctr:1.0.0", "--json")[1])
    assert show["lineage"]["libraries"] == here


def test_loading_under_another_minor_version_warns_and_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from prometheus_client import REGISTRY

    from lakecast.registry import Lineage
    from lakecast.registry.environment import library_versions

    registry = Registry(tmp_path / "load")
    x = np.random.default_rng(4).normal(size=(30, 2))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    older = {**library_versions(), "numpy": "1.0.0"}
    record = registry.register("ctr", model, signature=SIG, lineage=Lineage(libraries=older))
    labels = {"model": "ctr", "version": record.version, "library": "numpy"}
    before = REGISTRY.get_sample_value("lakecast_model_library_mismatch_total", labels) or 0.0
    with caplog.at_level("WARNING", logger="lakecast.registry.environment"):
        _, predictor = registry.load("ctr:1.0.0")
    assert predictor.predict(x[:3]).shape == (3,)  # still loads and scores
    assert REGISTRY.get_sample_value("lakecast_model_library_mismatch_total", labels) == before + 1
    assert "numpy trained with 1.0.0" in caplog.text


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
