"""The retraining policy: does the evidence about the live version call for a retrain?

Evidence is what the ``metrics`` topic carries (issue 18's contract): ``kind=quality``
records (the quality job), ``kind=drift`` records (the drift job) and ``kind=staleness``
records (the monitor). :func:`decide` reads the latest of each about the live version and
applies the ``retrain:`` config; every trigger that fires is kept as evidence, the first in
``retrain.triggers`` order names the decision. Pure: records in, a decision out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from lakecast.config import QualitySettings, RetrainSettings
from lakecast.quality.records import QUALITY_KIND, quality_drops

Trigger = Literal["quality", "drift", "age"]
DAY_S = 86_400.0


@dataclass(frozen=True)
class RetrainDecision:
    """Whether to retrain ``model``'s live ``version``, and why."""

    model: str
    version: str
    trigger: Trigger | None
    evidence: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    @property
    def retrain(self) -> bool:
        return self.trigger is not None


def _about(records: Iterable[Mapping[str, Any]], kind: str, model: str, version: str) -> list:
    return [
        r
        for r in records
        if r.get("kind") == kind and r.get("model") == model and str(r.get("version")) == version
    ]


def quality_evidence(
    records: list[Mapping[str, Any]], quality: QualitySettings
) -> tuple[list[dict[str, Any]], list[str]]:
    """The drops of the latest day's quality record of each variant."""
    latest: dict[str, Mapping[str, Any]] = {}
    for record in records:
        variant = str(record.get("variant"))
        if variant not in latest or str(record["day"]) >= str(latest[variant]["day"]):
            latest[variant] = record
    found, reasons = [], []
    for variant, record in sorted(latest.items()):
        for drop in quality_drops(record, quality.max_drop, quality.min_count):
            found.append(
                {
                    "variant": variant,
                    "day": record["day"],
                    "metric": drop.metric,
                    "live": drop.live,
                    "holdout": drop.holdout,
                    "allowed": drop.allowed,
                    "count": record["count"],
                }
            )
            reasons.append(f"quality on {record['day']} ({variant}): {drop.describe()}")
    return found, reasons


def drift_evidence(
    records: list[Mapping[str, Any]], settings: RetrainSettings
) -> tuple[list[dict[str, Any]], list[str]]:
    """The drifted features of the latest drift window, if there are enough of them."""
    if not records:
        return [], []

    def window_end(record: Mapping[str, Any]) -> str:
        window = record.get("window") or {}
        return str(window.get("end") or record.get("ts"))

    newest = max(window_end(r) for r in records)
    drifted = [r for r in records if window_end(r) == newest and r.get("drifted") is True]
    if len(drifted) < settings.drift_min_features:
        return [], []
    found = [
        {
            "feature": r.get("feature"),
            "psi": r.get("psi"),
            "ks": r.get("ks"),
            "psi_threshold": r.get("psi_threshold"),
            "ks_threshold": r.get("ks_threshold"),
            "window": r.get("window"),
        }
        for r in drifted
    ]
    names = ", ".join(str(r.get("feature")) for r in drifted)
    return found, [f"drift in the window ending {newest}: {len(drifted)} feature(s): {names}"]


def age_evidence(
    records: list[Mapping[str, Any]],
    settings: RetrainSettings,
    created_at: datetime,
    now: datetime,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The live version's age: the latest staleness record's ``model_age_s`` (since its
    training data ended) or, with none, the time since it was registered."""
    if records:
        latest = max(records, key=lambda r: str(r.get("ts")))
        age_s, source = float(latest["model_age_s"]), "staleness record"
    else:
        age_s, source = (now - created_at).total_seconds(), "registered at"
    limit_s = settings.max_model_age_days * DAY_S
    if age_s <= limit_s:
        return [], []
    evidence = {"model_age_s": age_s, "limit_s": limit_s, "from": source}
    reason = f"model age {age_s / DAY_S:.1f} days ({source}) over {settings.max_model_age_days:g}"
    return [evidence], [reason]


def decide(
    model: str,
    version: str,
    created_at: datetime,
    records: Iterable[Mapping[str, Any]],
    settings: RetrainSettings,
    quality: QualitySettings,
    now: datetime,
) -> RetrainDecision:
    """Apply the policy to the metrics records about ``model``'s live ``version``."""
    kept = list(records)
    hits: dict[Trigger, tuple[list[dict[str, Any]], list[str]]] = {
        "quality": quality_evidence(_about(kept, QUALITY_KIND, model, version), quality),
        "drift": drift_evidence(_about(kept, "drift", model, version), settings),
        "age": age_evidence(_about(kept, "staleness", model, version), settings, created_at, now),
    }
    fired = [t for t in settings.triggers if hits[t][0]]
    evidence: dict[str, Any] = {t: hits[t][0] for t in fired}
    reasons = [reason for t in fired for reason in hits[t][1]]
    return RetrainDecision(model, version, fired[0] if fired else None, evidence, reasons)
