"""The monitor on kind=drift records: the gauge per statistic, one alert per drifted feature
and window, a record that breaks the contract skipped and counted."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from kafka.consumer.fetcher import ConsumerRecord
from prometheus_client import REGISTRY

from lakecast.config import KafkaSettings
from lakecast.kafka.serde import encode_metric
from lakecast.monitoring.monitor import MonitorService

pytestmark = pytest.mark.unit


def _fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "model": "drift-model",
        "version": "1.1.0",
        "feature": "log_price",
        "psi": 0.61,
        "ks": 0.34,
        "psi_threshold": 0.2,
        "ks_threshold": 0.1,
        "drifted": True,
        "rows": 400,
        "window": {"start": "2026-01-05T00:00:00+00:00", "end": "2026-01-06T00:00:00+00:00"},
    }
    return fields | overrides


def _message(fields: dict[str, Any], offset: int = 0) -> ConsumerRecord:
    value = encode_metric("drift", "feature-drift", datetime.now(UTC), fields)
    return ConsumerRecord(
        "metrics", 0, None, offset, 0, 0, b"feature-drift", value, [], None, 16, len(value), 0
    )


def _gauge(feature: str, statistic: str) -> float | None:
    labels = {"model": "drift-model", "version": "1.1.0", "feature": feature}
    return REGISTRY.get_sample_value("lakecast_feature_drift", labels | {"statistic": statistic})


def test_a_drifted_feature_sets_the_gauges_and_alerts_once_per_window() -> None:
    service = MonitorService(KafkaSettings(), "metrics")
    alerts = service.handle(_message(_fields()))
    assert alerts is not None and len(alerts) == 1
    alert = alerts[0]
    assert (alert["detector"], alert["series"]) == ("feature_drift", "drift-model:1.1.0/log_price")
    assert "PSI 0.610 (threshold 0.2), KS 0.340 (threshold 0.1) over 400 rows" in alert["reason"]
    assert _gauge("log_price", "psi") == pytest.approx(0.61)
    assert _gauge("log_price", "ks") == pytest.approx(0.34)
    assert service.handle(_message(_fields(psi=0.7), 1)) == []  # a rerun of the same window
    assert _gauge("log_price", "psi") == pytest.approx(0.7)
    steady = _fields(feature="hour_sin", psi=0.01, ks=0.02, drifted=False)
    assert service.handle(_message(steady, 2)) == []
    assert _gauge("hour_sin", "ks") == pytest.approx(0.02)


def test_a_record_without_a_contract_field_is_skipped_and_counted() -> None:
    service = MonitorService(KafkaSettings(), "metrics")
    assert service.handle(_message(_fields(drifted="yes"))) is None
    fields = _fields()
    del fields["ks"]
    assert service.handle(_message(fields, 1)) is None
    assert service.stats.bad_records == 2
