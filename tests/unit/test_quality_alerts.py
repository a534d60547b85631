"""The monitor on kind=quality records: the gauge, one alert per drop, bad records skipped."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from kafka.consumer.fetcher import ConsumerRecord
from prometheus_client import REGISTRY

from lakecast.config import KafkaSettings, QualityDrops, QualitySettings
from lakecast.kafka.serde import encode_metric
from lakecast.monitoring.monitor import MonitorService

pytestmark = pytest.mark.unit


def _fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "model": "alerts-model",
        "version": "1.2.0",
        "variant": "candidate",
        "day": "2026-01-05",
        "auc": 0.62,
        "log_loss": 0.31,
        "brier": 0.09,
        "ece": 0.03,
        "base_rate": 0.12,
        "count": 900,
        "holdout": {"auc": 0.74, "log_loss": 0.29, "brier": 0.085, "ece": 0.02},
    }
    return fields | overrides


def _message(fields: dict[str, Any], offset: int = 0) -> ConsumerRecord:
    value = encode_metric("quality", "evaluate-quality", datetime.now(UTC), fields)
    return ConsumerRecord(
        "metrics", 0, None, offset, 0, 0, b"evaluate-quality", value, [], None, 16, len(value), 0
    )


def _service() -> MonitorService:
    quality = QualitySettings(min_count=500, max_drop=QualityDrops(auc=0.05))
    return MonitorService(KafkaSettings(), "metrics", quality=quality)


def test_a_drop_against_the_holdout_alerts_once_and_sets_the_gauge() -> None:
    service = _service()
    alerts = service.handle(_message(_fields()))
    assert alerts is not None
    assert [a["metric"] for a in alerts] == ["quality_auc"]
    alert = alerts[0]
    assert alert["value"] == pytest.approx(0.62)
    assert alert["holdout"] == pytest.approx(0.74)
    assert alert["detector"] == "quality_holdout"
    assert "auc 0.6200 against holdout 0.7400" in alert["reason"]
    labels = {"model": "alerts-model", "version": "1.2.0", "variant": "candidate"}
    gauge = REGISTRY.get_sample_value("lakecast_model_quality", labels | {"metric": "auc"})
    assert gauge == pytest.approx(0.62)
    # The quality job rerunning the same day does not alert again.
    assert service.handle(_message(_fields(), offset=1)) == []


def test_no_alert_within_the_allowed_drop_or_below_min_count() -> None:
    service = _service()
    assert service.handle(_message(_fields(auc=0.70))) == []
    assert service.handle(_message(_fields(auc=0.40, count=100, day="2026-01-06"))) == []


def test_a_quality_record_missing_a_field_is_skipped_and_counted() -> None:
    service = _service()
    broken = _fields()
    del broken["auc"]
    assert service.handle(_message(broken)) is None
    assert service.stats.bad_records == 1
