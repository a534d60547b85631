"""Pre-rollout gates over plain version facts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from lakecast.config import PROJECT_ROOT
from lakecast.errors import RolloutError
from lakecast.rollout.gates import (
    DEFAULT_CARD_FIELDS,
    GateConfig,
    VersionFacts,
    batch_latency_not_regressed,
    holdout_metric_not_worse,
    model_card_complete,
    run_gates,
    signature_compatible,
)

FULL_CARD = {name: f"some {name}" for name in DEFAULT_CARD_FIELDS}


def _version(ref: str, **changes: Any) -> VersionFacts:
    facts: dict[str, Any] = {
        "ref": ref,
        "inputs": {"price": "float64", "device": "string", "views_7d": "int64"},
        "outputs": {"score": "float32"},
        "metrics": {"holdout_roc_auc": 0.80, "logloss": 0.40},
        "card": FULL_CARD,
        "batch_latency_ms": 100.0,
    }
    facts.update(changes)
    return VersionFacts(**facts)


CHAMPION = _version("churn:1.0.0")


def test_a_good_candidate_passes_every_gate() -> None:
    report = run_gates(_version("churn:1.1.0", metrics={"holdout_roc_auc": 0.81}), CHAMPION)
    assert report.passed
    assert [r.gate for r in report.results] == [
        "signature_compatible",
        "holdout_metric",
        "model_card_complete",
        "batch_latency",
    ]
    report.raise_if_failed()


def test_signature_gate_names_each_incompatibility() -> None:
    candidate = _version(
        "churn:2.0.0",
        inputs={"price": "int64", "device": "str", "views_7d": "int64", "age": "int64"},
        outputs={"probability": "float32"},
    )
    result = signature_compatible(candidate, CHAMPION)
    assert not result.passed
    assert result.delta == -4.0
    for piece in ("['age']", "price float64->int64", "device string->str", "['score']"):
        assert piece in result.message
    # A float input read at another precision is fed the same column: compatible.
    rounded = _version("churn:1.1.0", inputs={**CHAMPION.inputs, "price": "float32"})
    assert signature_compatible(rounded, CHAMPION).passed
    float_output = _version("churn:1.1.0", outputs={"score": "float64"})
    assert "output types changed: ['score float32->float64']" in (
        signature_compatible(float_output, CHAMPION).message
    )
    # Reading fewer inputs and adding outputs is compatible.
    narrower = _version(
        "churn:1.2.0", inputs={"price": "float64"}, outputs={"score": "float32", "rank": "int32"}
    )
    assert signature_compatible(narrower, CHAMPION).passed


def test_holdout_metric_gate_says_by_how_much() -> None:
    worse = _version("churn:1.1.0", metrics={"holdout_roc_auc": 0.79})
    result = holdout_metric_not_worse(worse, CHAMPION, "holdout_roc_auc", margin=0.005)
    assert not result.passed
    assert result.delta == pytest.approx(-0.005)
    assert result.threshold == pytest.approx(0.795)
    within = _version("churn:1.1.0", metrics={"holdout_roc_auc": 0.797})
    assert holdout_metric_not_worse(within, CHAMPION, "holdout_roc_auc", margin=0.005).passed
    # Lower is better for a loss.
    higher_loss = _version("churn:1.1.0", metrics={"logloss": 0.45})
    loss = holdout_metric_not_worse(higher_loss, CHAMPION, "logloss", 0.01, higher_is_better=False)
    assert not loss.passed
    assert loss.delta == pytest.approx(-0.04)
    missing = holdout_metric_not_worse(
        _version("churn:1.1.0", metrics={}), CHAMPION, "holdout_roc_auc"
    )
    assert not missing.passed
    assert "churn:1.1.0" in missing.message


def test_model_card_gate_lists_missing_fields() -> None:
    card = {**FULL_CARD, "factors": "  ", "caveats_and_recommendations": None}
    result = model_card_complete(_version("churn:1.1.0", card=card))
    assert not result.passed
    assert result.delta == -2.0
    assert "['factors', 'caveats_and_recommendations']" in result.message


def test_batch_latency_gate_allows_the_margin_only() -> None:
    slow = batch_latency_not_regressed(_version("c:1", batch_latency_ms=125.0), CHAMPION, 0.10)
    assert not slow.passed
    assert slow.delta == pytest.approx(-0.15)
    ok = batch_latency_not_regressed(_version("c:1", batch_latency_ms=108.0), CHAMPION, 0.10)
    assert ok.passed
    assert ok.delta == pytest.approx(0.02)
    unmeasured = batch_latency_not_regressed(_version("c:1", batch_latency_ms=None), CHAMPION)
    assert not unmeasured.passed


def test_failed_gates_raise_a_rollout_error_naming_them() -> None:
    candidate = _version("churn:1.1.0", metrics={"holdout_roc_auc": 0.70}, batch_latency_ms=300.0)
    report = run_gates(
        candidate, CHAMPION, GateConfig(metric="holdout_roc_auc", metric_margin=0.01)
    )
    assert [r.gate for r in report.failed] == ["holdout_metric", "batch_latency"]
    with pytest.raises(RolloutError, match=r"holdout_metric.*batch_latency"):
        report.raise_if_failed()


def test_first_version_needs_a_card_and_the_minimum_holdout_bar() -> None:
    bar = GateConfig(min_holdout=0.6)
    report = run_gates(_version("churn:1.0.0", card={}), None, bar)
    assert [r.gate for r in report.results] == ["model_card_complete", "holdout_minimum"]
    assert [r.gate for r in report.failed] == ["model_card_complete"]
    weak = run_gates(_version("churn:1.0.0", metrics={"holdout_roc_auc": 0.55}), None, bar)
    assert [r.gate for r in weak.failed] == ["holdout_minimum"]
    assert weak.failed[0].delta == pytest.approx(-0.05)
    assert "holdout_roc_auc 0.55, must be at least 0.6" in weak.failed[0].message
    unmeasured = run_gates(_version("churn:1.0.0", metrics={}), None, bar)
    assert "missing" in unmeasured.failed[0].message
    assert run_gates(_version("churn:1.0.0", card={}), None, GateConfig(min_holdout=None)).results


def test_configured_gates_are_the_config_with_a_rollout_file_on_top() -> None:
    from lakecast.config import settings
    from lakecast.rollout.deploy import load_rollout_file

    configured = GateConfig.configured()
    assert configured.metric_margin == settings().rollout.gates.metric_margin == 0.005
    demo = GateConfig.configured(
        load_rollout_file(PROJECT_ROOT / "conf" / "rollouts" / "demo-canary.yaml")["gates"]
    )
    assert (demo.metric_margin, demo.latency_margin) == (0.005, 0.50)
    # The demo table's figures (100k events, 7 days): jobs/train.py's champion 0.8130 and MLP
    # 0.7984, a boosted-trees retrain with seed 7 0.7990 (both refused), with the champion's
    # seed 0.8130 (deploy/train_candidate.py --seed 42, what make demo canaries: passes).
    champion = _version("purchase:1.0.0", metrics={"holdout_roc_auc": 0.8130})
    mlp = _version("purchase:1.1.0", metrics={"holdout_roc_auc": 0.7984})
    reseeded = _version("purchase:1.2.0", metrics={"holdout_roc_auc": 0.7990})
    retrain = _version("purchase:1.3.0", metrics={"holdout_roc_auc": 0.8130})
    assert [r.gate for r in run_gates(mlp, champion, demo).failed] == ["holdout_metric"]
    assert [r.gate for r in run_gates(reseeded, champion, demo).failed] == ["holdout_metric"]
    assert run_gates(retrain, champion, demo).passed


@dataclass(frozen=True)
class _RegistryShapedRecord:
    """The fields the registry's ModelVersion has that the gates read."""

    name: str
    version: str
    signature: Any
    metrics: dict[str, float] = field(default_factory=dict)
    card: Any = None


def test_facts_read_from_registry_signature_and_card() -> None:
    from lakecast.registry.cards import ModelCard
    from lakecast.registry.signature import Signature

    record = _RegistryShapedRecord(
        name="churn",
        version="1.1.0",
        signature=Signature.of({"price": "float64", "views_7d": "int64"}, output_dtype="float32"),
        metrics={"holdout_roc_auc": 0.9, "batch_latency_ms": 90.0},
        card=ModelCard(**{name: f"some {name}" for name in DEFAULT_CARD_FIELDS}),
    )
    facts = VersionFacts.from_mapping(record)
    assert facts.ref == "churn:1.1.0"
    assert facts.inputs == {"price": "float64", "views_7d": "int64"}
    assert facts.outputs == {"score": "float32"}
    assert facts.batch_latency_ms == 90.0
    assert model_card_complete(facts).passed
    assert run_gates(facts, CHAMPION).passed
    blank = VersionFacts.from_mapping(
        _RegistryShapedRecord("churn", "1.1.1", record.signature, card=ModelCard())
    )
    assert model_card_complete(blank).delta == -len(DEFAULT_CARD_FIELDS)


def test_facts_read_from_plain_dicts() -> None:
    facts = VersionFacts.from_mapping(
        {
            "name": "churn",
            "version": "1.1.0",
            "signature": {
                "inputs": [{"name": "price", "dtype": "float64"}],
                "output": {"name": "score", "dtype": "float32"},
            },
            "metrics": {"auc": 1, "note": "not a number"},
            "batch_latency_ms": 80,
        }
    )
    assert facts.inputs == {"price": "float64"}
    assert facts.outputs == {"score": "float32"}
    assert facts.metrics == {"auc": 1.0}
    assert facts.batch_latency_ms == 80.0
