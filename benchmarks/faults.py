"""Fault campaigns with counts: kill real processes, restart the broker, count every event.

Streaming rows (this file): ``--worker-kills`` trials each kill -9 one of two inference
workers of a group at a random moment under a paced load and start it again in its slot;
``--broker-restarts`` trials kill -9 (or ``--broker-stop term``: SIGTERM) the broker under
load and start it again on the same ports and log dir. ``--brokers 3`` runs the streaming
rows on a three-node KRaft cluster instead, ``--cluster-trials`` of each of its faults (kill -9
the leader of an events partition, kill -9 a worker's transaction coordinator, a rolling
restart; :mod:`lakecast.testing.cluster_faults`). Each trial runs on fresh uuid-named
topics; afterwards every event id must appear exactly once among the committed predictions
and dead letters. The stall is the longest gap in committed output of one input partition
after the fault (see :mod:`lakecast.testing.faults`). Batch and registry rows come from
``benchmarks/faults_batch.py`` when it is there (``--skip-batch`` leaves them out).

    .venv/bin/python benchmarks/faults.py --worker-kills 20 --broker-restarts 5 --rate 1500 \\
        --skip-batch
    .venv/bin/python benchmarks/faults.py --brokers 3 --cluster-trials 3 --rate 250 --skip-batch

Exits 1 when any row lost or doubled an event.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fault_table import CampaignRow, format_table

from lakecast.testing.brokers import temporary_broker
from lakecast.testing.cluster_faults import CLUSTER_FAULTS, cluster_trial, temporary_cluster
from lakecast.testing.faults import (
    Campaign,
    Load,
    TrialResult,
    broker_restart_trial,
    scratch_dir,
    worker_kill_trial,
)
from lakecast.testing.models import served_lake

BatchCampaigns = Callable[[argparse.Namespace], list[CampaignRow]]


def _batch_module() -> tuple[Callable[[argparse.ArgumentParser], None], BatchCampaigns] | None:
    try:
        from faults_batch import add_arguments, batch_campaigns
    except ImportError:
        return None
    return add_arguments, batch_campaigns


def _row(campaign: Campaign, note: str) -> CampaignRow:
    return CampaignRow(
        campaign=campaign.name,
        trials=len(campaign.trials),
        events=campaign.events,
        lost=campaign.lost,
        duplicated=campaign.duplicated,
        worst_stall_s=campaign.worst_stall_s(),
        p99_stall_s=campaign.p99_stall_s(),
        note=note,
    )


def _print_trial(index: int, trial: TrialResult, took_s: float) -> None:
    down = "" if trial.downtime_s is None else f" down {trial.downtime_s:.1f} s"
    if trial.restart_s is not None or trial.downtime_s is None:
        ready = "-" if trial.restart_s is None else f"{trial.restart_s:.1f} s"
        down += f" restarted worker ready {ready}"
    print(
        f"  {index:>2} {trial.fault:<16} events {trial.events:>6,} lost {trial.lost} "
        f"dup {trial.duplicated} stall {trial.stall_s:5.1f} s{down} latency p50 "
        f"{trial.latency_p50_s:.2f} max {trial.latency_max_s:.1f} s "
        f"exits {trial.unasked_exits} ({took_s:.0f} s)",
        flush=True,
    )
    if not trial.clean:
        print(
            f"     re-read after the trial: lost {trial.reread_lost} dup "
            f"{trial.reread_duplicated}; the workers' logs name group {trial.group}",
            flush=True,
        )


def streaming_campaigns(args: argparse.Namespace, scratch: Path) -> list[CampaignRow]:
    rng = random.Random(args.seed)
    load = Load(rate=args.rate, after_s=args.after_s)
    lake = served_lake(scratch / "lake")
    rows: list[CampaignRow] = []
    if args.worker_kills:
        kills = Campaign("kill -9 one of two workers, restarted")
        broker = temporary_broker(scratch / "broker")
        broker.start()
        try:
            print(f"worker kills at {args.rate:,} events/s:", flush=True)
            for index in range(args.worker_kills):
                began = time.monotonic()
                trial = worker_kill_trial(
                    broker.bootstrap_servers,
                    lake,
                    scratch / "logs",
                    load=load,
                    rng=rng,
                )
                kills.trials.append(trial)
                _print_trial(index, trial, time.monotonic() - began)
        finally:
            broker.stop()
        rows.append(_row(kills, f"{args.rate:,} events/s; slot restarted at once"))
    if args.broker_restarts:
        crash = args.broker_stop == "kill"
        how = "kill -9" if crash else "SIGTERM"
        restarts = Campaign(f"broker {how} and start, 2 workers")
        broker = temporary_broker(scratch / "restart-broker")
        broker.start()
        try:
            print(f"broker restarts ({how}) at {args.rate:,} events/s:", flush=True)
            for index in range(args.broker_restarts):
                began = time.monotonic()
                trial = broker_restart_trial(
                    broker, lake, scratch / "logs", load=load, crash=crash, rng=rng
                )
                restarts.trials.append(trial)
                _print_trial(index, trial, time.monotonic() - began)
        finally:
            broker.stop()
        excess = max(t.stall_s - (t.downtime_s or 0.0) for t in restarts.trials)
        rows.append(
            _row(restarts, f"worst stall - downtime {excess:.1f} s; same ports and log dir")
        )
    return rows


def cluster_campaigns(args: argparse.Namespace, scratch: Path) -> list[CampaignRow]:
    """``--cluster-trials`` of each cluster fault on one ``--brokers``-node cluster."""
    rng = random.Random(args.seed)
    lake = served_lake(scratch / "lake")
    cluster = temporary_cluster(scratch / "cluster", nodes=args.brokers)
    cluster.start()
    rows: list[CampaignRow] = []
    try:
        for fault in CLUSTER_FAULTS:
            # A rolling restart lasts three node restarts: a slower load keeps its counts small.
            rate = args.rate if fault != "rolling" else max(1, args.rate // 5)
            load = Load(rate=rate, after_s=args.after_s)
            campaign = Campaign(f"{args.brokers} brokers: {fault}")
            print(f"{fault} at {rate:,} events/s:", flush=True)
            for index in range(args.cluster_trials):
                began = time.monotonic()
                trial = cluster_trial(cluster, fault, lake, scratch / "logs", load=load, rng=rng)
                campaign.trials.append(trial)
                _print_trial(index, trial, time.monotonic() - began)
            exits = sum(t.unasked_exits for t in campaign.trials)
            rows.append(_row(campaign, f"{rate:,} events/s; workers exited {exits}"))
    finally:
        cluster.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker-kills", type=int, default=20, help="worker kill -9 trials")
    parser.add_argument("--broker-restarts", type=int, default=5, help="broker restart trials")
    parser.add_argument("--rate", type=int, default=1_500, help="events/s during each trial")
    parser.add_argument("--after-s", type=float, default=12.0, help="load after each fault")
    parser.add_argument("--broker-stop", choices=("kill", "term"), default="kill")
    parser.add_argument("--seed", type=int, default=None, help="the fault moments' seed")
    parser.add_argument(
        "--brokers", type=int, default=1, help="3: the streaming rows on a three-node cluster"
    )
    parser.add_argument(
        "--cluster-trials", type=int, default=3, help="trials of each fault with --brokers 3"
    )
    parser.add_argument("--skip-batch", action="store_true", help="streaming rows only")
    batch = _batch_module()
    if batch is not None:
        batch[0](parser)
    args = parser.parse_args()

    scratch = scratch_dir("lakecast-faults-")
    rows: list[CampaignRow] = []
    try:
        if args.brokers > 1:
            rows = cluster_campaigns(args, scratch)
        else:
            rows = streaming_campaigns(args, scratch)
    finally:
        if rows and all(row.clean for row in rows):
            shutil.rmtree(scratch, ignore_errors=True)
        else:  # the evidence: brokers' data and workers' logs
            print(f"kept {scratch} (a trial was not clean, or the campaign failed)")
    if args.skip_batch:
        print("batch and registry campaigns: skipped (--skip-batch)")
    elif batch is None:
        print("batch and registry campaigns: skipped (benchmarks/faults_batch.py is not there)")
    else:
        rows += batch[1](args)
    print()
    print(format_table(rows))
    sys.exit(0 if all(row.clean for row in rows) else 1)


if __name__ == "__main__":
    main()
