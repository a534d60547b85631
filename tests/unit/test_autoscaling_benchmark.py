"""The autoscaling benchmark's pure parts: its trace, its policies, its worker-seconds."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from lakecast.demo.fleet import DemoTopics

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "autoscaling.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_autoscaling", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the body runs
    spec.loader.exec_module(module)
    return module


def test_trace_is_a_day_with_a_spike_above_noon(bench: ModuleType) -> None:
    trace = bench.daily_trace(100.0, 60, day_factor=2.0, spike_factor=5.0, spike_s=10)
    start, end = trace.spike
    assert end - start == 10
    assert len(trace.rates) == 60
    assert trace.rates[0] == pytest.approx(100.0)
    outside = [r for t, r in enumerate(trace.rates) if not start <= t < end]
    assert max(outside) == pytest.approx(200.0, rel=0.01)
    assert all(r == pytest.approx(500.0) for r in trace.rates[start:end])
    assert trace.events == sum(round(r) for r in trace.rates)


def test_policies_validate_and_differ_only_in_the_lag_rule(bench: ModuleType) -> None:
    fixed, cpu, both = bench.setups(3, 4000.0)
    assert fixed.policy is None and fixed.fixed == 3
    assert cpu.policy.scale_up_policy.metric_type == "CPUUtilization"
    assert cpu.policy.consumer_lag.lag_threshold >= bench.NO_LAG_THRESHOLD
    assert both.policy.consumer_lag.lag_threshold == 4000.0
    assert cpu.policy.model_copy(update={"consumer_lag": None}) == both.policy.model_copy(
        update={"consumer_lag": None}
    )
    assert cpu.policy.max_replicas == both.policy.max_replicas == 3


def test_worker_seconds_integrate_the_counts_over_the_window(bench: ModuleType) -> None:
    counter = bench.WorkerCounter(DemoTopics(run="t"))
    counter.samples = [(0.0, 1), (10.0, 3), (15.0, 1)]
    assert counter.worker_seconds(0.0, 20.0) == pytest.approx(10 * 1 + 5 * 3 + 5 * 1)
    assert counter.worker_seconds(5.0, 12.0) == pytest.approx(5 * 1 + 2 * 3)
    assert counter.peak(0.0, 20.0) == 3
    assert counter.peak(16.0, 20.0) == 0
