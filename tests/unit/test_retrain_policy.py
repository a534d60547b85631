"""The retraining policy on metrics records written by hand (the contract's kinds)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lakecast.config import QualitySettings, RetrainSettings
from lakecast.retrain.loop import decision_record
from lakecast.retrain.policy import decide

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 10, 3, 0, tzinfo=UTC)
FRESH = NOW - timedelta(days=2)


def quality(day: str, auc: float, *, version: str = "1.0.0", count: int = 800) -> dict[str, Any]:
    return {
        "kind": "quality",
        "source": "evaluate-quality",
        "ts": NOW,
        "model": "purchase",
        "version": version,
        "variant": "default",
        "day": day,
        "auc": auc,
        "log_loss": 0.3,
        "brier": 0.08,
        "ece": 0.02,
        "base_rate": 0.1,
        "count": count,
        "holdout": {"auc": 0.78, "log_loss": 0.29, "brier": 0.08, "ece": 0.02},
    }


def drift(feature: str, drifted: bool, end: str) -> dict[str, Any]:
    return {
        "kind": "drift",
        "source": "feature-drift",
        "ts": NOW,
        "model": "purchase",
        "version": "1.0.0",
        "feature": feature,
        "psi": 0.4 if drifted else 0.01,
        "ks": 0.2 if drifted else 0.01,
        "psi_threshold": 0.2,
        "ks_threshold": 0.1,
        "drifted": drifted,
        "rows": 500,
        "window": {"start": "2026-01-09T00:00:00+00:00", "end": end},
    }


def _decide(records: list[dict[str, Any]], created_at: datetime = FRESH, **retrain: Any) -> Any:
    return decide(
        "purchase",
        "1.0.0",
        created_at,
        records,
        RetrainSettings(**retrain),
        QualitySettings(),
        NOW,
    )


def test_the_latest_days_quality_drop_triggers() -> None:
    decision = _decide([quality("2026-01-08", 0.77), quality("2026-01-09", 0.66)])
    assert decision.trigger == "quality"
    (found,) = decision.evidence["quality"]
    assert found["day"] == "2026-01-09"
    assert found["metric"] == "auc"
    assert found["live"] == pytest.approx(0.66)
    assert "auc 0.6600 against holdout 0.7800" in decision.reasons[0]


def test_a_recovered_day_or_another_version_does_not_trigger() -> None:
    assert _decide([quality("2026-01-08", 0.66), quality("2026-01-09", 0.77)]).trigger is None
    assert _decide([quality("2026-01-09", 0.60, version="0.9.0")]).trigger is None
    assert _decide([quality("2026-01-09", 0.60, count=50)]).trigger is None


def test_drift_of_the_latest_window_triggers_with_enough_features() -> None:
    late = "2026-01-10T00:00:00+00:00"
    records = [
        drift("price", True, "2026-01-09T12:00:00+00:00"),
        drift("price", False, late),
        drift("device_mobile", True, late),
    ]
    decision = _decide(records)
    assert decision.trigger == "drift"
    assert [f["feature"] for f in decision.evidence["drift"]] == ["device_mobile"]
    assert _decide(records, drift_min_features=2).trigger is None


def test_age_from_staleness_records_or_the_registration_time() -> None:
    stale = {
        "kind": "staleness",
        "source": "monitor",
        "ts": NOW,
        "model": "purchase",
        "version": "1.0.0",
        "alias": "champion",
        "model_age_s": 40 * 86_400.0,
        "snapshot_age_s": 600.0,
    }
    assert _decide([stale]).trigger == "age"
    assert _decide([], created_at=NOW - timedelta(days=31)).trigger == "age"
    assert _decide([]).trigger is None


def test_every_fired_trigger_is_evidence_and_the_configured_order_names_it() -> None:
    records = [quality("2026-01-09", 0.6), drift("price", True, "2026-01-10T00:00:00+00:00")]
    decision = _decide(records, triggers=("drift", "quality"))
    assert decision.trigger == "drift"
    assert set(decision.evidence) == {"drift", "quality"}
    record = decision_record(decision, "none", "dry_run")
    assert {"model", "trigger", "evidence", "action", "new_version", "outcome"} <= set(record)
    assert _decide(records, triggers=("age",)).trigger is None


def test_the_canary_replays_only_days_the_candidate_did_not_train_on() -> None:
    with pytest.raises(ValueError, match=r"canary_days \(2\) must not exceed holdout_days \(1\)"):
        RetrainSettings(canary_days=2)
    with pytest.raises(ValueError, match="must be below train_days"):
        RetrainSettings(train_days=2, holdout_days=2)


def test_a_dry_run_and_a_quiet_day_are_recorded_in_the_audit(tmp_path: Any) -> None:
    import json

    from lakecast.registry import Registry
    from lakecast.retrain.loop import RetrainRequest, run_retrain
    from lakecast.testing.models import register_model

    root = str(tmp_path / "registry")
    live = register_model(root)

    def request(records: list[dict[str, Any]]) -> RetrainRequest:
        drop = [r | {"version": live.version} for r in records]
        return RetrainRequest(
            "purchase", str(tmp_path / "features"), root, drop, dry_run=True, now=NOW
        )

    quiet = run_retrain(request([quality("2026-01-09", 0.77)]), sink=None)
    assert (quiet["trigger"], quiet["action"], quiet["outcome"]) == (None, "none", "no_trigger")
    dry = run_retrain(request([quality("2026-01-09", 0.60)]), sink=None)
    assert (dry["trigger"], dry["outcome"], dry["new_version"]) == ("quality", "dry_run", None)
    rows = [e for e in Registry(root).audit("purchase") if e.action == "retrain"]
    assert [json.loads(e.reason)["outcome"] for e in rows] == ["no_trigger", "dry_run"]
    assert Registry(root).resolve("purchase@champion").version == live.version
