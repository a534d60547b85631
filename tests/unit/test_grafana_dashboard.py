"""The shipped Grafana dashboard only queries metrics that lakecast really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import lakecast.autoscaling.controller
import lakecast.monitoring.prometheus
import lakecast.serving.feature_log  # the served-feature sample's metrics
import lakecast.serving.metrics  # noqa: F401  (defines the worker's metrics)

DASHBOARD = Path(__file__).resolve().parents[2] / "conf" / "grafana" / "lakecast-streaming.json"


SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "info": ("_info",),
    "gauge": ("",),
}


def exported_names() -> set[str]:
    """Series names as Prometheus scrapes them (labelled metrics have no samples yet)."""
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        for suffix in SUFFIXES.get(family.type, ("",))
    }


def test_every_dashboard_query_names_an_exported_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"lakecast_[a-z_]+", target["expr"])
    }
    assert len(queried) >= 10
    missing = sorted(queried - exported_names())
    assert missing == []
