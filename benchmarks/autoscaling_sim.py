"""Autoscaling policies over days of load, simulated: latency above target vs worker-seconds.

The simulator (:mod:`lakecast.autoscaling.simulate`) plays each trace through a queue whose
workers have the capacity, start-up time and rebalance pause measured with real workers
(``conf/autoscale-workers.json``, from ``benchmarks/autoscaling_measure.py``), and lets the real
:class:`~lakecast.autoscaling.controller.ScalingController` scale it on a simulated clock. The
traces: the synthetic day with a spike (five days, the spike on the last) and every realTweets
and realTraffic series of NAB's dev subset (a 5-minute point per second), each scaled so that
its peak needs the pool's maximum replicas.

The predictive policy's parameters were chosen on the traces marked ``tuned`` (``--tune`` runs
that grid again); the others are held out.

    .venv/bin/python benchmarks/autoscaling_sim.py                     # ~1 minute
    .venv/bin/python benchmarks/autoscaling_sim.py --tune
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from autoscaling_policies import TUNED_PREDICTIVE, Setup, Windows, predictive_section, setups
from autoscaling_traces import NAB_DAY_S, Trace, daily_trace, nab_traces, peak_rate

from lakecast.autoscaling.simulate import (
    SimOutcome,
    WorkerModel,
    load_worker_model,
    oracle_worker_seconds,
    simulate,
)

MAX_REPLICAS = 6
TARGET_SHARE_ABOVE = 0.01
TARGET_WORKER_SHARE = 0.60
# The traces the predictive policy was tuned on; every other one is held out.
TUNED = frozenset(
    {
        "daily+spike",
        "realTweets/Twitter_volume_AAPL",
        "realTweets/Twitter_volume_GOOG",
        "realTraffic/occupancy_6005",
        "realTraffic/speed_6005",
    }
)
WINDOWS = Windows(evaluation_s=3.0, stabilisation_s=30.0, max_step=3)


@dataclass(frozen=True)
class Row:
    trace: str
    policy: str
    outcome: SimOutcome
    fixed_worker_seconds: float
    oracle_worker_seconds: float

    @property
    def worker_share(self) -> float:
        return self.outcome.worker_seconds / self.fixed_worker_seconds

    @property
    def meets_target(self) -> bool:
        return (
            self.outcome.share_above <= TARGET_SHARE_ABOVE
            and self.worker_share <= TARGET_WORKER_SHARE
        )


def traces(workers: WorkerModel) -> list[Trace]:
    peak = peak_rate(workers.capacity, MAX_REPLICAS)
    day = daily_trace(1.0, NAB_DAY_S, day_factor=2.0, spike_factor=5.0, spike_s=15, days=5)
    return [day.scaled(peak), *nab_traces(peak)]


def the_setups(workers: WorkerModel, **predictive: float) -> list[Setup]:
    options = {**TUNED_PREDICTIVE, **predictive}
    utilisation = options.pop("utilisation")
    horizon = options.pop("horizon_s")
    section = predictive_section(
        workers.capacity,
        season_s=NAB_DAY_S,
        horizon_s=horizon,
        utilisation=utilisation,
        step_s=WINDOWS.evaluation_s,
        **options,
    )
    return setups(
        MAX_REPLICAS, lag_threshold=workers.capacity / 2, windows=WINDOWS, predictive=section
    )


def run(trace: Trace, chosen: list[Setup], workers: WorkerModel, target_s: float) -> list[Row]:
    rows = []
    fixed_ws = float(MAX_REPLICAS * len(trace.rates))
    oracle_ws = oracle_worker_seconds(trace.rates, workers)
    for setup in chosen:
        outcome = simulate(
            trace.rates,
            workers,
            policy=setup.policy,
            fixed=setup.fixed if setup.policy is None else None,
            target_latency_s=target_s,
        )
        rows.append(Row(trace.name, setup.name, outcome, fixed_ws, oracle_ws))
    return rows


def print_rows(rows: list[Row], out: Callable[[str], None]) -> None:
    head = (
        f"{'trace':<42}{'policy':<19}{'s above target':>20}{'worker-s':>18}"
        f"{'actions':>9}{'worst lag':>12}{'target':>8}{'least worker-s':>16}"
    )
    out(head)
    out("-" * len(head))
    for trace, group in itertools.groupby(rows, key=lambda r: r.trace):
        mark = "" if trace in TUNED else " (held out)"
        for row in group:
            o = row.outcome
            out(
                f"{trace + mark:<42}{row.policy:<19}"
                f"{f'{o.seconds_above:,} ({o.share_above:.2%})':>20}"
                f"{f'{o.worker_seconds:,.0f} ({row.worker_share:.0%})':>18}"
                f"{o.actions:>9,}{o.worst_lag:>12,.0f}{'met' if row.meets_target else 'MISSED':>8}"
                f"{row.oracle_worker_seconds / row.fixed_worker_seconds:>16.0%}"
            )
            trace = ""
            mark = ""


def summary(rows: list[Row], out: Callable[[str], None]) -> None:
    out("\nper policy: traces meeting the target (<= 1 % above, <= 60 % worker-s); mean shares")
    for policy in dict.fromkeys(r.policy for r in rows):
        mine = [r for r in rows if r.policy == policy]
        for label, part in (
            ("tuned", [r for r in mine if r.trace in TUNED]),
            ("held out", [r for r in mine if r.trace not in TUNED]),
        ):
            if not part:
                continue
            met = sum(r.meets_target for r in part)
            above = sum(r.outcome.share_above for r in part) / len(part)
            share = sum(r.worker_share for r in part) / len(part)
            out(
                f"  {policy:<19}{label:<10}{met:>3} / {len(part):<3} met; mean above "
                f"{above:.2%}, mean worker-s {share:.0%}"
            )


def tune(workers: WorkerModel, target_s: float, out: Callable[[str], None]) -> None:
    """A small grid over the predictive section on the TUNED traces, best first."""
    tuned = [t for t in traces(workers) if t.name in TUNED]
    grid = itertools.product((0.6, 0.7, 0.8), (10.0, 20.0, 40.0), (15.0, 30.0, 60.0), (1, 3))
    scored = []
    for utilisation, horizon, window, seasons in grid:
        options = {
            "utilisation": utilisation,
            "horizon_s": horizon,
            "level_window_s": window,
            "seasons": seasons,
        }
        setup = the_setups(workers, **options)[-1]
        rows = [r for t in tuned for r in run(t, [setup], workers, target_s)]
        misses = sum(not r.meets_target for r in rows)
        above = max(r.outcome.share_above for r in rows)
        share = sum(r.worker_share for r in rows) / len(rows)
        scored.append((misses, above, share, options))
    scored.sort(key=lambda s: (s[0], s[1] + s[2]))
    for misses, above, share, options in scored[:8]:
        out(f"  misses {misses}, worst above {above:.2%}, mean worker-s {share:.0%}: {options}")


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> list[Row]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--target-ms", type=float, default=1000.0, help="latency target")
    parser.add_argument("--tune", action="store_true", help="grid over the predictive section")
    parser.add_argument("--only", action="append", help="traces whose name has this")
    args = parser.parse_args(argv)
    workers = load_worker_model()
    target_s = args.target_ms / 1000
    out(
        f"workers (measured): {workers.capacity:,.0f} events/s each, start-up "
        f"{workers.startup_s:g} s, rebalance pause {workers.rebalance_pause_s:g} s, "
        f"CPU {workers.cpu_percent_at_capacity:g} % at capacity; latency target "
        f"{args.target_ms:g} ms; max {MAX_REPLICAS} replicas"
    )
    if args.tune:
        tune(workers, target_s, out)
        return []
    chosen = the_setups(workers)
    out("policies:")
    for setup in chosen:
        out(f"  {setup.name:<18} {setup.describe()}")
    rows: list[Row] = []
    for trace in traces(workers):
        if args.only and not any(o in trace.name for o in args.only):
            continue
        rows += run(trace, chosen, workers, target_s)
    print_rows(rows, out)
    summary(rows, out)
    return rows


if __name__ == "__main__":
    main()
