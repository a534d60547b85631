"""Automated canary analysis in the manner of Kayenta.

For each metric, a two-sided Mann-Whitney U test (98 % confidence by default) and the
Hodges-Lehmann estimate of the shift (median of pairwise differences candidate - baseline)
classify the candidate against the baseline as ``pass``, ``high`` or ``low``; a metric says
which direction is bad and how large a shift it tolerates. The score is the weighted share
of passing metrics; a sample-ratio-mismatch chi-square test guards the split itself.

The verdict (pass / marginal / fail / insufficient_data) carries every number that led to
it and dumps to JSON for the ``metrics`` topic (kind=rollout) and the registry's audit log.
Too few samples never pass: they make ``insufficient_data`` and the controller holds.

Outcome metrics (opt-in per rollout plan, :class:`OutcomeAnalysis`): once the rollout has run
longer than the label horizon, each variant's predictions have realised outcomes, and each
prediction's log loss and squared error (:func:`outcome_samples`) are samples like latencies:
the same test judges whether the candidate's predictions are worse than the champion's on the
same traffic. Before the horizon they are not judged, and the verdict says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import stats

Classification = Literal["pass", "high", "low", "nodata"]
Verdict = Literal["pass", "marginal", "fail", "insufficient_data"]
Action = Literal["promote", "hold", "rollback"]

_ACTIONS: dict[str, Action] = {
    "pass": "promote",
    "marginal": "hold",
    "fail": "rollback",
    "insufficient_data": "hold",
}


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricSpec(_Frozen):
    """How one metric is judged.

    ``bad_direction``: ``high`` (latency: an increase is bad), ``low`` (conversion: a
    decrease is bad) or ``either`` (a score distribution: any shift is bad). A shift is
    tolerated up to ``max(tolerance, relative_tolerance * |baseline median|)``, in the
    metric's units. A ``critical`` metric that fails fails the whole canary.
    """

    name: str = Field(min_length=1)
    bad_direction: Literal["high", "low", "either"] = "either"
    tolerance: float = Field(default=0.0, ge=0)
    relative_tolerance: float = Field(default=0.0, ge=0)
    weight: float = Field(default=1.0, gt=0)
    critical: bool = False
    # ``median``: Mann-Whitney U and the Hodges-Lehmann shift (latencies, scores). ``mean``:
    # Welch's t-test and the difference of means, for per-prediction losses, whose mean is
    # the metric (log loss, Brier) and whose median sits on the many easy negatives: a
    # candidate with 50 % more log loss moved the median loss by 4 % (Mann-Whitney passed it).
    statistic: Literal["median", "mean"] = "median"


class CanaryConfig(_Frozen):
    """Thresholds of the analysis; the defaults are Kayenta's usual ones."""

    confidence: float = Field(default=0.98, gt=0.5, lt=1)
    pass_score: float = Field(default=95.0, ge=0, le=100)
    marginal_score: float = Field(default=75.0, ge=0, le=100)
    min_samples: int = Field(default=50, ge=2)
    srm_alpha: float = Field(default=0.001, gt=0, lt=1)
    srm_action: Literal["fail", "hold"] = "fail"
    effect_sample: int = Field(default=2_000, ge=10)
    seed: int = 0

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> CanaryConfig:
        if self.marginal_score > self.pass_score:
            msg = (
                f"marginal_score {self.marginal_score} must not exceed pass_score {self.pass_score}"
            )
            raise ValueError(msg)
        return self


class MetricResult(_Frozen):
    """One metric's outcome and the numbers behind it."""

    name: str
    classification: Classification
    p_value: float | None
    effect_size: float | None
    allowed_effect: float | None
    baseline_count: int
    candidate_count: int
    baseline_median: float | None
    candidate_median: float | None
    weight: float
    critical: bool
    reason: str


class SrmResult(_Frozen):
    """The sample-ratio-mismatch check: observed counts against the expected split."""

    observed: dict[str, int]
    expected: dict[str, float]
    chi2: float
    p_value: float
    mismatch: bool


class CanaryVerdict(_Frozen):
    """The outcome of one canary analysis; ``model_dump(mode="json")`` is its record."""

    verdict: Verdict
    action: Action
    score: float | None
    metrics: list[MetricResult]
    srm: SrmResult | None
    reasons: list[str]
    pass_score: float
    marginal_score: float
    rollout_id: str | None = None
    baseline: str | None = None
    candidate: str | None = None


def _finite(values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def hodges_lehmann(
    candidate: npt.NDArray[np.float64],
    baseline: npt.NDArray[np.float64],
    *,
    max_each: int = 2_000,
    seed: int = 0,
) -> float:
    """The median of all pairwise differences ``candidate_i - baseline_j``.

    Exact when both samples have at most ``max_each`` values; otherwise computed on random
    subsamples of that size (seeded), which estimates the same median shift.
    """
    rng = np.random.default_rng(seed)
    if candidate.size > max_each:
        candidate = rng.choice(candidate, size=max_each, replace=False)
    if baseline.size > max_each:
        baseline = rng.choice(baseline, size=max_each, replace=False)
    return float(np.median(np.subtract.outer(candidate, baseline)))


def classify_metric(
    spec: MetricSpec,
    baseline: npt.ArrayLike | None,
    candidate: npt.ArrayLike | None,
    config: CanaryConfig | None = None,
) -> MetricResult:
    """Judge one metric: Mann-Whitney U for significance, Hodges-Lehmann for the size."""
    config = config or CanaryConfig()
    base = _finite([] if baseline is None else baseline)
    cand = _finite([] if candidate is None else candidate)
    common: dict[str, Any] = {
        "name": spec.name,
        "baseline_count": int(base.size),
        "candidate_count": int(cand.size),
        "weight": spec.weight,
        "critical": spec.critical,
    }
    if base.size < config.min_samples or cand.size < config.min_samples:
        return MetricResult(
            classification="nodata",
            p_value=None,
            effect_size=None,
            allowed_effect=None,
            baseline_median=float(np.median(base)) if base.size else None,
            candidate_median=float(np.median(cand)) if cand.size else None,
            reason=(
                f"{spec.name}: {base.size} baseline and {cand.size} candidate samples, "
                f"fewer than the {config.min_samples} each needed"
            ),
            **common,
        )
    base_median = float(np.median(base))
    if spec.statistic == "mean":
        p_value = float(stats.ttest_ind(cand, base, equal_var=False).pvalue)
        effect = float(cand.mean() - base.mean())
        allowed = max(spec.tolerance, spec.relative_tolerance * abs(float(base.mean())))
    else:
        p_value = float(stats.mannwhitneyu(cand, base, alternative="two-sided").pvalue)
        effect = hodges_lehmann(cand, base, max_each=config.effect_sample, seed=config.seed)
        allowed = max(spec.tolerance, spec.relative_tolerance * abs(base_median))
    if math.isnan(p_value):
        p_value = 1.0
    significant = p_value < 1.0 - config.confidence
    shift: Literal["high", "low", "none"] = "none"
    if significant and effect > allowed:
        shift = "high"
    elif significant and effect < -allowed:
        shift = "low"
    bad = shift != "none" and spec.bad_direction in (shift, "either")
    classification: Classification = "pass"
    if bad and shift != "none":
        classification = shift
    if bad:
        side = "higher" if shift == "high" else "lower"
        why = f"{side} than baseline beyond the allowed {allowed:.4g}"
    elif shift != "none":
        why = f"shifted {shift}, which {spec.name} allows"
    elif significant:
        why = f"significant but within the allowed {allowed:.4g}"
    else:
        why = f"no significant difference at {config.confidence:.0%} confidence"
    return MetricResult(
        classification=classification,
        p_value=p_value,
        effect_size=effect,
        allowed_effect=allowed,
        baseline_median=base_median,
        candidate_median=float(np.median(cand)),
        reason=f"{spec.name}: {why} (p={p_value:.3g}, effect={effect:+.4g})",
        **common,
    )


def sample_ratio_mismatch(
    observed: Mapping[str, int], expected_split: Mapping[str, float], alpha: float = 0.001
) -> SrmResult:
    """Chi-square test of observed counts per variant against the expected shares.

    Raises:
        ValueError: the variants of ``observed`` and ``expected_split`` differ, or a share
            is not positive.
    """
    if set(observed) != set(expected_split):
        msg = (
            f"SRM check: observed variants {sorted(observed)} differ from "
            f"expected {sorted(expected_split)}"
        )
        raise ValueError(msg)
    if any(share <= 0 for share in expected_split.values()):
        msg = f"SRM check: expected shares must be positive, found {dict(expected_split)}"
        raise ValueError(msg)
    names = sorted(observed)
    counts = np.asarray([observed[name] for name in names], dtype=np.float64)
    shares = np.asarray([expected_split[name] for name in names], dtype=np.float64)
    total = float(counts.sum())
    expected = total * shares / shares.sum()
    if total == 0:
        chi2, p_value = 0.0, 1.0
    else:
        result = stats.chisquare(counts, expected)
        chi2, p_value = float(result.statistic), float(result.pvalue)
    return SrmResult(
        observed={name: int(observed[name]) for name in names},
        expected={name: float(value) for name, value in zip(names, expected, strict=True)},
        chi2=chi2,
        p_value=p_value,
        mismatch=p_value < alpha,
    )


def _score(results: Sequence[MetricResult]) -> float | None:
    judged = [result for result in results if result.classification != "nodata"]
    if not judged:
        return None
    passed = sum(result.weight for result in judged if result.classification == "pass")
    return 100.0 * passed / sum(result.weight for result in judged)


def analyse_canary(
    baseline: Mapping[str, npt.ArrayLike],
    candidate: Mapping[str, npt.ArrayLike],
    metrics: Sequence[MetricSpec],
    config: CanaryConfig | None = None,
    *,
    observed_counts: Mapping[str, int] | None = None,
    expected_split: Mapping[str, float] | None = None,
    rollout_id: str | None = None,
    baseline_model: str | None = None,
    candidate_model: str | None = None,
) -> CanaryVerdict:
    """Compare candidate with baseline on every metric and decide.

    Args:
        baseline: metric name -> the baseline's samples (e.g. per-request latencies).
        candidate: metric name -> the candidate's samples.
        metrics: how each metric is judged; a metric without samples is ``nodata``.
        config: thresholds; defaults to :class:`CanaryConfig`.
        observed_counts: events per variant, for the sample-ratio-mismatch check.
        expected_split: the shares the split should give (e.g. ``{"champion": 75,
            "candidate": 25}``); needed with ``observed_counts``.

    Raises:
        ValueError: no metrics, or ``observed_counts`` without ``expected_split``.
    """
    config = config or CanaryConfig()
    if not metrics:
        msg = "canary analysis needs at least one metric"
        raise ValueError(msg)
    if (observed_counts is None) != (expected_split is None):
        msg = "canary analysis: observed_counts and expected_split go together"
        raise ValueError(msg)
    results = [
        classify_metric(spec, baseline.get(spec.name), candidate.get(spec.name), config)
        for spec in metrics
    ]
    srm = None
    if observed_counts is not None and expected_split is not None:
        srm = sample_ratio_mismatch(observed_counts, expected_split, config.srm_alpha)
    score = _score(results)
    reasons = [result.reason for result in results if result.classification != "pass"]
    verdict = _metrics_verdict(score, results, config, reasons)
    if srm is not None and srm.mismatch:
        verdict = _after_mismatch(verdict, srm, config, reasons)
    return CanaryVerdict(
        verdict=verdict,
        action=_ACTIONS[verdict],
        score=score,
        metrics=results,
        srm=srm,
        reasons=reasons,
        pass_score=config.pass_score,
        marginal_score=config.marginal_score,
        rollout_id=rollout_id,
        baseline=baseline_model,
        candidate=candidate_model,
    )


def _metrics_verdict(
    score: float | None, results: Sequence[MetricResult], config: CanaryConfig, reasons: list[str]
) -> Verdict:
    """The verdict of the metrics alone: by score, failed by a critical metric, and never a
    pass on partial evidence. Appends its reasons."""
    verdict: Verdict
    if score is None:
        verdict = "insufficient_data"
    elif score >= config.pass_score:
        verdict = "pass"
    elif score >= config.marginal_score:
        verdict = "marginal"
    else:
        verdict = "fail"
    failed_critical = [
        r.name for r in results if r.critical and r.classification in ("high", "low")
    ]
    if failed_critical:
        verdict = "fail"
        reasons.append(f"critical metric(s) failed: {', '.join(failed_critical)}")
    elif verdict in ("pass", "marginal") and any(r.classification == "nodata" for r in results):
        # Judging on the metrics that happen to have data would pass on partial evidence.
        verdict = "insufficient_data"
    if score is not None:
        reasons.append(
            f"score {score:.1f} (pass >= {config.pass_score}, marginal >= {config.marginal_score})"
        )
    return verdict


def _after_mismatch(
    verdict: Verdict, srm: SrmResult, config: CanaryConfig, reasons: list[str]
) -> Verdict:
    """A sample ratio mismatch fails the canary or makes it marginal (``srm_action``)."""
    reasons.append(
        f"sample ratio mismatch: observed {srm.observed}, expected {srm.expected} "
        f"(chi2={srm.chi2:.4g}, p={srm.p_value:.3g} < {config.srm_alpha})"
    )
    if config.srm_action == "fail":
        return "fail"
    return verdict if verdict == "fail" else "marginal"


OUTCOME_LOG_LOSS = "outcome_log_loss"
OUTCOME_BRIER = "outcome_brier"
OUTCOME_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        name=OUTCOME_LOG_LOSS,
        bad_direction="high",
        relative_tolerance=0.02,
        critical=True,
        statistic="mean",
    ),
    MetricSpec(name=OUTCOME_BRIER, bad_direction="high", relative_tolerance=0.02, statistic="mean"),
)


class OutcomeAnalysis(_Frozen):
    """Judge outcome metrics too, once the rollout has lasted ``horizon_s`` (the label
    horizon: a purchase label is final a day after the event). Opt-in per rollout plan, in
    its ``controller:`` section as ``outcomes: {horizon_s: 86400}``."""

    horizon_s: float = Field(default=86_400.0, gt=0)
    metrics: tuple[MetricSpec, ...] = OUTCOME_METRICS

    @model_validator(mode="after")
    def _known_metrics(self) -> OutcomeAnalysis:
        known = {OUTCOME_LOG_LOSS, OUTCOME_BRIER}
        unknown = sorted({m.name for m in self.metrics} - known)
        if unknown or not self.metrics:
            msg = f"outcome analysis: metrics must be among {sorted(known)}, found {unknown or []}"
            raise ValueError(msg)
        return self


def outcome_samples(labels: npt.ArrayLike, scores: npt.ArrayLike) -> dict[str, np.ndarray]:
    """Per prediction: its log loss and its squared error (Brier contribution).

    Raises:
        ValueError: the lengths differ.
    """
    y = np.asarray(labels, dtype=np.float64).ravel()
    p = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != p.shape:
        msg = f"outcome samples: {y.size} labels but {p.size} scores"
        raise ValueError(msg)
    clipped = np.clip(p, 1e-7, 1 - 1e-7)
    return {
        OUTCOME_LOG_LOSS: -(y * np.log(clipped) + (1 - y) * np.log1p(-clipped)),
        OUTCOME_BRIER: (p - y) ** 2,
    }


@dataclass(frozen=True)
class OutcomeEvidence:
    """Per variant, per outcome metric, one value per prediction with a known outcome; and
    how long the rollout's predictions in it have been running (``lasted_s``)."""

    samples: Mapping[str, Mapping[str, np.ndarray]]
    lasted_s: float


def judged_metrics(
    metrics: Sequence[MetricSpec], outcomes: OutcomeAnalysis | None, lasted_s: float
) -> tuple[tuple[MetricSpec, ...], str | None]:
    """The metrics a canary is judged on: ``metrics``, plus the outcome metrics when the plan
    opted in and the rollout has lasted at least the horizon; and a note when it opted in
    but has not lasted long enough yet."""
    if outcomes is None:
        return tuple(metrics), None
    if lasted_s < outcomes.horizon_s:
        note = (
            f"outcome metrics not judged yet: the rollout has run {lasted_s:.0f} s, less than "
            f"the label horizon of {outcomes.horizon_s:.0f} s"
        )
        return tuple(metrics), note
    return (*metrics, *outcomes.metrics), None
