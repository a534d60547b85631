"""The autoscaling benchmarks' pure parts: traces, policies, worker-seconds, the simulated table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from lakecast.autoscaling.simulate import WorkerModel
from lakecast.demo.fleet import DemoTopics

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))  # the benchmarks import their siblings by name
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the body runs
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def traces() -> ModuleType:
    return load("autoscaling_traces")


@pytest.fixture(scope="module")
def policies() -> ModuleType:
    return load("autoscaling_policies")


def test_trace_is_a_day_with_a_spike_above_noon(traces: ModuleType) -> None:
    trace = traces.daily_trace(100.0, 60, day_factor=2.0, spike_factor=5.0, spike_s=10)
    start, end = trace.spike
    assert end - start == 10
    assert len(trace.rates) == 60
    assert trace.rates[0] == pytest.approx(100.0)
    outside = [r for t, r in enumerate(trace.rates) if not start <= t < end]
    assert max(outside) == pytest.approx(200.0, rel=0.01)
    assert all(r == pytest.approx(500.0) for r in trace.rates[start:end])
    assert trace.events == sum(round(r) for r in trace.rates)


def test_several_days_repeat_the_curve_and_spike_only_the_last(traces: ModuleType) -> None:
    trace = traces.daily_trace(100.0, 60, day_factor=2.0, spike_factor=5.0, spike_s=10, days=3)
    assert len(trace.rates) == 180
    assert trace.spike == (2 * 60 + 33, 2 * 60 + 43)
    assert trace.rates[:60] == trace.rates[60:120]
    assert max(trace.rates[:120]) == pytest.approx(200.0, rel=0.01)
    assert trace.season_s == 60


def test_nab_traces_are_scaled_so_the_peak_needs_every_replica(
    traces: ModuleType, tmp_path: Path
) -> None:
    series = tmp_path / "realTweets"
    series.mkdir()
    (series / "x.csv").write_text(
        "timestamp,value\n2015-01-01 00:00:00,10\n2015-01-01 00:05:00,40\n2015-01-01 00:10:00,20\n",
        encoding="utf-8",
    )
    (tmp_path / "realTraffic").mkdir()
    peak = traces.peak_rate(1000.0, 6)
    assert peak == pytest.approx(5400.0)  # 5 workers cannot serve it, 6 can
    (trace,) = traces.nab_traces(peak, root=tmp_path)
    assert trace.name == "realTweets/x"
    assert trace.rates == pytest.approx((1350.0, 5400.0, 2700.0))
    assert trace.season_s == traces.NAB_DAY_S


def test_the_real_nab_series_load(traces: ModuleType) -> None:
    if not traces.NAB_DATA.is_dir():
        pytest.skip(f"no NAB data at {traces.NAB_DATA}")
    found = traces.nab_traces(1000.0)
    names = {t.name.split("/")[0] for t in found}
    assert names == set(traces.NAB_SERIES)
    assert all(max(t.rates) == pytest.approx(1000.0) for t in found)


def test_policies_differ_only_in_their_rules(policies: ModuleType) -> None:
    section = policies.predictive_section(1000.0, season_s=60.0, horizon_s=15.0)
    fixed, cpu, both, ahead = policies.setups(3, 4000.0, predictive=section)
    assert fixed.policy is None and fixed.fixed == 3
    assert cpu.policy.scale_up_policy.metric_type == "CPUUtilization"
    assert cpu.policy.consumer_lag.lag_threshold >= policies.NO_LAG_THRESHOLD
    assert both.policy.consumer_lag.lag_threshold == 4000.0
    assert cpu.policy.model_copy(update={"consumer_lag": None}) == both.policy.model_copy(
        update={"consumer_lag": None}
    )
    assert ahead.policy.model_copy(update={"predictive": None}) == both.policy
    assert ahead.policy.predictive.records_per_replica == 600  # 60 % of 1,000
    assert cpu.policy.max_replicas == both.policy.max_replicas == 3
    assert "forecast 15 s ahead" in ahead.describe()
    assert len(policies.setups(3, 4000.0)) == 3


def test_worker_seconds_integrate_the_counts_over_the_window() -> None:
    rig = load("autoscaling_rig")
    counter = rig.WorkerCounter(DemoTopics(run="t"))
    counter.samples = [(0.0, 1), (10.0, 3), (15.0, 1)]
    assert counter.worker_seconds(0.0, 20.0) == pytest.approx(10 * 1 + 5 * 3 + 5 * 1)
    assert counter.worker_seconds(5.0, 12.0) == pytest.approx(5 * 1 + 2 * 3)
    assert counter.peak(0.0, 20.0) == 3
    assert counter.peak(16.0, 20.0) == 0


def test_the_simulated_table_ranks_policies_on_a_daily_trace(traces: ModuleType) -> None:
    sim = load("autoscaling_sim")
    workers = WorkerModel(capacity=1000.0, startup_s=6.0, rebalance_pause_s=0.5)
    day = traces.daily_trace(1.0, 288, day_factor=2.0, spike_factor=5.0, spike_s=15, days=4)
    trace = day.scaled(traces.peak_rate(workers.capacity, sim.MAX_REPLICAS))
    rows = {r.policy: r for r in sim.run(trace, sim.the_setups(workers), workers, 1.0)}
    assert set(rows) == {"fixed at the peak", "CPU only", "CPU + lag", "predictive"}
    assert rows["fixed at the peak"].worker_share == pytest.approx(1.0)
    assert rows["fixed at the peak"].outcome.seconds_above == 0
    ahead, reactive = rows["predictive"], rows["CPU + lag"]
    # Scaling ahead of the daily curve: fewer seconds late for fewer worker-seconds.
    assert ahead.outcome.seconds_above < reactive.outcome.seconds_above
    assert ahead.worker_share < reactive.worker_share < 1.0
    lines: list[str] = []
    sim.print_rows(list(rows.values()), lines.append)
    assert any("predictive" in line for line in lines)


def test_measure_finds_the_rebalance_gap() -> None:
    measure = load("autoscaling_measure")
    stamps = [10.0, 10.1, 10.2, 11.0, 11.05]
    assert measure.longest_gap(stamps, 10.0, 12.0) == (10.2, 11.0)
    assert measure.rate_between(stamps, 10.0, 11.0) == pytest.approx(3.0)
