"""Canary analysis: Mann-Whitney + Hodges-Lehmann per metric, score, SRM, verdict."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from lakecast.rollout.analysis import (
    CanaryConfig,
    MetricSpec,
    analyse_canary,
    classify_metric,
    hodges_lehmann,
    sample_ratio_mismatch,
)

METRICS = [
    MetricSpec(name="latency_ms", bad_direction="high", tolerance=5.0),
    MetricSpec(name="score", bad_direction="either", tolerance=0.02),
    MetricSpec(name="error_rate", bad_direction="high", tolerance=0.0),
]


def _samples(seed: int, n: int, latency_shift: float = 0.0, score_shift: float = 0.0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "latency_ms": rng.gamma(shape=4.0, scale=10.0, size=n) + latency_shift,
        "score": np.clip(rng.beta(2.0, 5.0, size=n) + score_shift, 0, 1),
        "error_rate": (rng.random(n) < 0.01).astype(float),
    }


def test_identical_distributions_pass() -> None:
    verdict = analyse_canary(_samples(1, 2_000), _samples(2, 2_000), METRICS)
    assert verdict.verdict == "pass"
    assert verdict.action == "promote"
    assert verdict.score == 100.0
    assert {m.classification for m in verdict.metrics} == {"pass"}


def test_thirty_ms_slower_candidate_fails_on_latency() -> None:
    verdict = analyse_canary(_samples(1, 2_000), _samples(2, 2_000, latency_shift=30.0), METRICS)
    latency = next(m for m in verdict.metrics if m.name == "latency_ms")
    assert latency.classification == "high"
    assert latency.effect_size == pytest.approx(30.0, abs=3.0)
    assert latency.p_value is not None and latency.p_value < 0.02
    assert verdict.score == pytest.approx(200 / 3)
    assert verdict.verdict == "fail"
    assert verdict.action == "rollback"
    assert any("latency_ms" in reason and "higher" in reason for reason in verdict.reasons)


def test_faster_candidate_passes_when_only_high_is_bad() -> None:
    verdict = analyse_canary(_samples(1, 2_000), _samples(2, 2_000, latency_shift=-30.0), METRICS)
    latency = next(m for m in verdict.metrics if m.name == "latency_ms")
    assert latency.classification == "pass"
    assert "allows" in latency.reason
    assert verdict.verdict == "pass"


def test_shifted_score_distribution_fails_in_either_direction() -> None:
    for shift, expected in ((0.1, "high"), (-0.1, "low")):
        verdict = analyse_canary(_samples(1, 2_000), _samples(2, 2_000, score_shift=shift), METRICS)
        score = next(m for m in verdict.metrics if m.name == "score")
        assert score.classification == expected
        assert verdict.verdict == "fail"


def test_a_significant_but_tolerated_shift_passes() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(50, 5, 5_000)
    cand = rng.normal(51, 5, 5_000)
    spec = MetricSpec(name="latency_ms", bad_direction="high", tolerance=2.0)
    result = classify_metric(spec, base, cand)
    assert result.p_value is not None and result.p_value < 0.02
    assert result.classification == "pass"
    strict = classify_metric(spec.model_copy(update={"tolerance": 0.5}), base, cand)
    assert strict.classification == "high"


def test_relative_tolerance_scales_with_the_baseline() -> None:
    rng = np.random.default_rng(4)
    base = rng.normal(100, 5, 3_000)
    cand = rng.normal(104, 5, 3_000)
    loose = MetricSpec(name="m", bad_direction="high", relative_tolerance=0.05)
    tight = MetricSpec(name="m", bad_direction="high", relative_tolerance=0.02)
    assert classify_metric(loose, base, cand).classification == "pass"
    assert classify_metric(tight, base, cand).classification == "high"


def test_marginal_between_the_thresholds() -> None:
    metrics = [MetricSpec(name=f"m{i}", bad_direction="high", tolerance=1.0) for i in range(5)]
    rng = np.random.default_rng(9)
    base = {m.name: rng.normal(10, 1, 500) for m in metrics}
    cand = {m.name: rng.normal(10, 1, 500) for m in metrics}
    cand["m0"] = rng.normal(15, 1, 500)
    verdict = analyse_canary(base, cand, metrics)
    assert verdict.score == pytest.approx(80.0)
    assert (verdict.verdict, verdict.action) == ("marginal", "hold")
    # Thresholds are configurable.
    lenient = analyse_canary(base, cand, metrics, CanaryConfig(pass_score=80, marginal_score=50))
    assert lenient.verdict == "pass"


def test_a_failing_critical_metric_fails_whatever_the_score() -> None:
    metrics = [
        MetricSpec(name=f"m{i}", bad_direction="high", tolerance=1.0, critical=i == 0)
        for i in range(20)
    ]
    rng = np.random.default_rng(2)
    base = {m.name: rng.normal(10, 1, 300) for m in metrics}
    cand = {m.name: rng.normal(10, 1, 300) for m in metrics}
    cand["m0"] = rng.normal(20, 1, 300)
    verdict = analyse_canary(base, cand, metrics)
    assert verdict.score == pytest.approx(95.0)
    assert verdict.verdict == "fail"
    assert any("critical" in reason for reason in verdict.reasons)


def test_small_samples_are_insufficient_not_a_pass() -> None:
    verdict = analyse_canary(_samples(1, 20), _samples(2, 20), METRICS)
    assert verdict.verdict == "insufficient_data"
    assert verdict.action == "hold"
    assert verdict.score is None
    assert {m.classification for m in verdict.metrics} == {"nodata"}
    assert all("fewer than the 50" in m.reason for m in verdict.metrics)


def test_one_metric_without_data_holds_an_otherwise_passing_canary() -> None:
    base, cand = _samples(1, 1_000), _samples(2, 1_000)
    cand["error_rate"] = cand["error_rate"][:10]
    verdict = analyse_canary(base, cand, METRICS)
    assert verdict.score == 100.0
    assert verdict.verdict == "insufficient_data"
    missing = analyse_canary(base, {k: v for k, v in cand.items() if k != "score"}, METRICS)
    assert missing.verdict == "insufficient_data"


def test_non_finite_values_are_dropped_before_testing() -> None:
    rng = np.random.default_rng(3)
    base = np.concatenate([rng.normal(0, 1, 200), [np.nan, np.inf]])
    result = classify_metric(MetricSpec(name="m"), base, rng.normal(0, 1, 200))
    assert result.baseline_count == 200
    assert result.classification == "pass"


def test_srm_detected_on_60_40_when_50_50_expected() -> None:
    srm = sample_ratio_mismatch(
        {"champion": 6_000, "candidate": 4_000}, {"champion": 50, "candidate": 50}
    )
    assert srm.mismatch
    assert srm.chi2 == pytest.approx(400.0)
    assert srm.expected == {"candidate": 5_000.0, "champion": 5_000.0}
    fair = sample_ratio_mismatch(
        {"champion": 5_030, "candidate": 4_970}, {"champion": 1, "candidate": 1}
    )
    assert not fair.mismatch


def test_srm_forces_fail_or_hold() -> None:
    base, cand = _samples(1, 2_000), _samples(2, 2_000)
    counts = {"champion": 6_000, "candidate": 4_000}
    split = {"champion": 50.0, "candidate": 50.0}
    failing = analyse_canary(base, cand, METRICS, observed_counts=counts, expected_split=split)
    assert failing.score == 100.0
    assert (failing.verdict, failing.action) == ("fail", "rollback")
    assert any("sample ratio mismatch" in reason for reason in failing.reasons)
    holding = analyse_canary(
        base,
        cand,
        METRICS,
        CanaryConfig(srm_action="hold"),
        observed_counts=counts,
        expected_split=split,
    )
    assert holding.action == "hold"
    fine = analyse_canary(
        base,
        cand,
        METRICS,
        observed_counts={"champion": 7_480, "candidate": 2_520},
        expected_split={"champion": 75, "candidate": 25},
    )
    assert fine.verdict == "pass"
    assert fine.srm is not None and not fine.srm.mismatch


def test_verdict_is_json_serialisable_with_its_reasons() -> None:
    verdict = analyse_canary(
        _samples(1, 500),
        _samples(2, 500, latency_shift=30.0),
        METRICS,
        observed_counts={"champion": 500, "candidate": 500},
        expected_split={"champion": 50, "candidate": 50},
        rollout_id="churn-canary-7",
        baseline_model="churn:1.0.0",
        candidate_model="churn:1.1.0",
    )
    record = json.loads(verdict.model_dump_json())
    assert record["verdict"] == "fail"
    assert record["candidate"] == "churn:1.1.0"
    latency = next(m for m in record["metrics"] if m["name"] == "latency_ms")
    assert latency["classification"] == "high"
    assert latency["baseline_count"] == 500
    assert set(latency) >= {"p_value", "effect_size", "allowed_effect", "candidate_count"}
    assert record["srm"]["mismatch"] is False


def test_hodges_lehmann_is_the_median_of_pairwise_differences() -> None:
    cand = np.array([3.0, 5.0, 9.0])
    base = np.array([1.0, 2.0])
    expected = np.median([c - b for c in cand for b in base])
    assert hodges_lehmann(cand, base) == expected
    rng = np.random.default_rng(0)
    big_c, big_b = rng.normal(7, 2, 50_000), rng.normal(0, 2, 50_000)
    assert hodges_lehmann(big_c, big_b, max_each=1_000) == pytest.approx(7.0, abs=0.3)


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValidationError, match="must not exceed"):
        CanaryConfig(pass_score=70, marginal_score=80)
    with pytest.raises(ValueError, match="at least one metric"):
        analyse_canary({}, {}, [])
    with pytest.raises(ValueError, match="go together"):
        analyse_canary({}, {}, METRICS, observed_counts={"a": 1})
    with pytest.raises(ValueError, match="differ from"):
        sample_ratio_mismatch({"a": 1}, {"b": 1.0})
