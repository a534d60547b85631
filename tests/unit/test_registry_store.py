"""The registry on delta-rs: register, resolve, semver refusals, aliases, audit, integrity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from deltalake import DeltaTable
from sklearn.linear_model import LogisticRegression

from lakecast.errors import ModelIntegrityError, ModelNotFoundError, RegistryError, VersionRuleError
from lakecast.registry import Lineage, ModelCard, Registry, Signature

SIG = Signature.of(["price", "views", "dwell"])


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(120, 3))
    return x, (x[:, 0] + 0.3 * x[:, 1] > 0).astype(int)


@pytest.fixture(scope="module")
def models(data: tuple[np.ndarray, np.ndarray]) -> list[LogisticRegression]:
    x, y = data
    return [LogisticRegression(C=c).fit(x, y) for c in (1.0, 0.1, 0.01)]


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "registry")


def test_register_writes_delta_tables_and_a_content_addressed_artifact(
    registry: Registry, models: list[LogisticRegression]
) -> None:
    lineage = Lineage(
        training_table="/lake/training", training_table_version=3, parameters={"C": 1}
    )
    v1 = registry.register(
        "ctr",
        models[0],
        signature=SIG,
        metrics={"auc": 0.81},
        lineage=lineage,
        created_by="ana",
        nan_policy="impute_zero",
    )
    assert v1.version == "1.0.0"
    artifact = Path(v1.artifact_path)
    assert artifact.parent.name == v1.sha256
    assert artifact.name == "model.skops"
    rows = DeltaTable(f"{registry.root}/versions").to_pyarrow_table().to_pylist()
    assert [(r["name"], r["version"], r["sha256"], r["flavor"]) for r in rows] == [
        ("ctr", "1.0.0", v1.sha256, "sklearn")
    ]
    assert rows[0]["artifact_path"] == f"artifacts/{v1.sha256}/model.skops"
    back = registry.resolve("ctr:1.0.0")
    assert back == v1
    assert back.lineage.training_table_version == 3
    assert back.nan_policy == "impute_zero"


def test_auto_bump_follows_the_change(registry: Registry, models: list[LogisticRegression]) -> None:
    v1 = registry.register("ctr", models[0], signature=SIG)
    retrained = registry.register("ctr", models[1], signature=SIG, metrics={"auc": 0.8})
    card_only = registry.register("ctr", card=ModelCard(intended_use="ranking"))
    assert (v1.version, retrained.version, card_only.version) == ("1.0.0", "1.1.0", "1.1.1")
    assert card_only.sha256 == retrained.sha256
    assert card_only.metrics == {"auc": 0.8}
    assert card_only.card.intended_use == "ranking"
    assert registry.resolve("ctr").version == "1.1.1"


def test_same_artifact_registered_twice_is_stored_once(
    registry: Registry, models: list[LogisticRegression], tmp_path: Path
) -> None:
    import skops.io

    artifact = tmp_path / "model.skops"
    skops.io.dump(models[0], artifact)
    v1 = registry.register("ctr", artifact=artifact, signature=SIG)
    v2 = registry.register("ctr", artifact=artifact, signature=SIG, bump="patch")
    assert v2.version == "1.0.1"
    assert (v1.sha256, v1.artifact_path) == (v2.sha256, v2.artifact_path)
    assert len(list((Path(registry.root) / "artifacts").iterdir())) == 1


def test_incompatible_signature_without_major_bump_is_refused_naming_columns(
    registry: Registry, models: list[LogisticRegression], data: tuple[np.ndarray, np.ndarray]
) -> None:
    registry.register("ctr", models[0], signature=SIG)
    x, y = data
    narrower = LogisticRegression().fit(x[:, :2], y)
    new_sig = Signature.of({"price": "int64", "views": "float32"})
    with pytest.raises(VersionRuleError) as refused:
        registry.register("ctr", narrower, signature=new_sig, bump="minor")
    message = str(refused.value)
    assert "removed 'dwell' (float32)" in message
    assert "changed dtype 'price' float32 -> int64" in message
    assert "needs a major bump" in message
    assert [v.version for v in registry.versions("ctr")] == ["1.0.0"]
    assert registry.register("ctr", narrower, signature=new_sig, bump="major").version == "2.0.0"


def test_new_artifact_with_only_a_patch_bump_is_refused(
    registry: Registry, models: list[LogisticRegression]
) -> None:
    registry.register("ctr", models[0], signature=SIG)
    with pytest.raises(VersionRuleError, match=r"artifact changed.*needs a minor bump"):
        registry.register("ctr", models[1], signature=SIG, version="1.0.1")


def test_explicit_versions_exist_once_and_backports_compare_with_their_predecessor(
    registry: Registry, models: list[LogisticRegression]
) -> None:
    registry.register("ctr", models[0], signature=SIG, version="1.0.0")
    registry.register("ctr", models[1], signature=SIG, version="2.0.0")
    with pytest.raises(VersionRuleError, match="already exists"):
        registry.register("ctr", models[2], signature=SIG, version="2.0.0")
    backport = registry.register("ctr", models[2], signature=SIG, version="1.1.0")
    assert backport.version == "1.1.0"
    assert [v.version for v in registry.versions("ctr")] == ["1.0.0", "1.1.0", "2.0.0"]


def test_resolve_names_what_is_unknown(
    registry: Registry, models: list[LogisticRegression]
) -> None:
    registry.register("ctr", models[0], signature=SIG)
    with pytest.raises(ModelNotFoundError, match="model 'nope' is not registered"):
        registry.resolve("nope")
    with pytest.raises(ModelNotFoundError, match=r"no version 9.9.9 \(versions: \['1.0.0'\]\)"):
        registry.resolve("ctr:9.9.9")
    with pytest.raises(ModelNotFoundError, match="no alias 'champion'"):
        registry.resolve("ctr@champion")


def test_promote_rollback_and_audit(registry: Registry, models: list[LogisticRegression]) -> None:
    for model in models:
        registry.register("ctr", model, signature=SIG)
    registry.promote("ctr", "1.0.0", "champion", who="ana", why="first")
    registry.promote("ctr", "1.1.0", "champion", who="bo", why="better auc")
    state = registry.promote("ctr", "1.2.0", "champion", who="bo", why="even better")
    assert state.history == ("1.0.0", "1.1.0")
    assert registry.resolve("ctr@champion").version == "1.2.0"

    back = registry.rollback("ctr", "champion", who="cy", why="latency regression")
    assert (back.version, back.history) == ("1.1.0", ("1.0.0",))
    back = registry.rollback("ctr", "champion", who="cy", why="again")
    assert (back.version, back.history) == ("1.0.0", ())
    with pytest.raises(RegistryError, match=r"pointed only at 1\.0\.0"):
        registry.rollback("ctr", "champion", who="cy", why="no more")
    with pytest.raises(ModelNotFoundError, match="no such alias"):
        registry.rollback("ctr", "challenger")

    moves = [e for e in registry.audit("ctr") if e.alias == "champion"]
    assert [(e.action, e.version, e.previous_version, e.who, e.reason) for e in moves] == [
        ("promote", "1.0.0", None, "ana", "first"),
        ("promote", "1.1.0", "1.0.0", "bo", "better auc"),
        ("promote", "1.2.0", "1.1.0", "bo", "even better"),
        ("rollback", "1.1.0", "1.2.0", "cy", "latency regression"),
        ("rollback", "1.0.0", "1.1.0", "cy", "again"),
    ]
    assert [e.seq for e in moves] == [1, 2, 3, 4, 5]
    registered = [e.version for e in registry.audit("ctr") if e.action == "register"]
    assert registered == ["1.0.0", "1.1.0", "1.2.0"]


def test_promote_unknown_version_is_refused(
    registry: Registry, models: list[LogisticRegression]
) -> None:
    registry.register("ctr", models[0], signature=SIG)
    with pytest.raises(ModelNotFoundError, match=r"no version 3\.0\.0"):
        registry.promote("ctr", "3.0.0", "champion")
    assert registry.aliases("ctr") == {}


def test_load_returns_a_predictor_matching_the_model(
    registry: Registry, models: list[LogisticRegression], data: tuple[np.ndarray, np.ndarray]
) -> None:
    registry.register("ctr", models[0], signature=SIG)
    registry.promote("ctr", "1.0.0", "champion")
    record, predictor = registry.load("ctr@champion")
    x, _ = data
    # SIG's inputs are float32: the predictor reads each value rounded to float32.
    as_read = x.astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(predictor.predict(x), models[0].predict_proba(as_read)[:, 1])
    assert predictor.signature == SIG
    assert record.version == "1.0.0"


def test_tampered_artifact_is_refused_on_load_and_by_verify(
    registry: Registry, models: list[LogisticRegression]
) -> None:
    v1 = registry.register("ctr", models[0], signature=SIG)
    assert all(r.ok for r in registry.verify("ctr"))
    path = Path(v1.artifact_path)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelIntegrityError) as refused:
        registry.load("ctr:1.0.0")
    message = str(refused.value)
    assert "'ctr' version 1.0.0" in message
    assert v1.sha256 in message
    assert "has sha256 " in message
    results = registry.verify("ctr:1.0.0")
    assert [r.ok for r in results] == [False]
    assert v1.sha256 in results[0].detail


def test_list_models_summarises_versions_and_aliases(
    registry: Registry, models: list[LogisticRegression]
) -> None:
    registry.register("ctr", models[0], signature=SIG, description="click-through")
    registry.register("ctr", models[1], signature=SIG)
    registry.register("churn", models[2], signature=SIG)
    registry.promote("ctr", "1.0.0", "champion")
    summaries = registry.list_models()
    assert [(s.name, s.latest, s.versions, dict(s.aliases)) for s in summaries] == [
        ("churn", "1.0.0", 1, {}),
        ("ctr", "1.1.0", 2, {"champion": "1.0.0"}),
    ]
    assert summaries[1].description == "click-through"


def test_invalid_inputs_are_refused(registry: Registry, models: list[LogisticRegression]) -> None:
    with pytest.raises(RegistryError, match="not a valid name"):
        registry.register("bad:name", models[0], signature=SIG)
    with pytest.raises(RegistryError, match="needs its signature"):
        registry.register("ctr", models[0])
    with pytest.raises(RegistryError, match="metric 'auc'"):
        registry.register("ctr", models[0], signature=SIG, metrics={"auc": float("nan")})
    with pytest.raises(VersionRuleError, match="metadata-only"):
        registry.register("ctr", card=ModelCard())
