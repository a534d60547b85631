"""Fault campaigns on the batch jobs and the registry, as rows of the fault table.

    .venv/bin/python benchmarks/faults_batch.py [--job-kills 10] [--writers 4] [--changes 10]

- ``kill -9 <job>, rerun``: ``extract_features.py`` and ``score_batch.py`` through
  ``./spark-submit.sh --master local[1]``, the process group SIGKILLed at a random moment of
  the second half of a clean run's duration, alternately while creating the tables and while
  replacing / MERGEing into existing ones, then rerun to completion; every table read back by
  delta-rs and by Spark, each expected key counted (lost: missing; dup: rows beyond one a key).
- ``N processes x M registry changes``: writer processes released together, each promoting an
  alias of one model to versions of its own and updating its rollout after each promotion;
  every change a writer saw succeed must be in the audit log / rollout history, one row each,
  and the final state the last committed change.
- ``registry writer killed``: a writer SIGKILLs itself just before and just after the commit of
  a promotion and of a rollout update, or is SIGKILLed from outside at a random moment; the
  change must be there with its audit row, or neither.
- ``<hostile> artifact refused``: a pickle, a tampered byte, a skops file of an untrusted type,
  each loaded through ``Registry.load`` N times (lost: loads that were accepted).

``benchmarks/faults.py`` calls :func:`batch_campaigns` for these rows.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from fault_table import CampaignRow, format_table

from lakecast.testing import batch_faults, registry_faults


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of these campaigns (also on ``benchmarks/faults.py``)."""
    group = parser.add_argument_group("batch and registry campaigns")
    group.add_argument("--job-kills", type=int, default=10, help="kills of each batch job")
    group.add_argument("--batch-rows", type=int, default=3000, help="events in the batch lake")
    group.add_argument("--writers", type=int, default=4, help="registry writer processes")
    group.add_argument("--changes", type=int, default=10, help="promotions per writer")
    group.add_argument(
        "--writer-kills", type=int, default=10, help="registry writers killed at random"
    )
    group.add_argument("--refusals", type=int, default=20, help="loads of each hostile artifact")
    group.add_argument("--batch-seed", type=int, default=0, help="the kill schedule's seed")
    group.add_argument("--keep", action="store_true", help="keep the scratch lake")


def _job_rows(args: argparse.Namespace, scratch: Path) -> list[CampaignRow]:
    if args.job_kills <= 0:
        return []
    lake = batch_faults.build_lake(scratch / "lake", rows=args.batch_rows)
    rows = []
    for job in batch_faults.JOBS:
        trials = batch_faults.campaign(lake, job, args.job_kills, seed=args.batch_seed)
        verified = batch_faults.spark_verify(lake, trials)
        lost = sum(t.lost for t in trials)
        duplicated = sum(t.duplicated for t in trials)
        disagree = unreadable = 0
        for trial in trials:
            unreadable += bool(trial.error)
            for count in trial.counts:
                seen = verified.get(str(trial.out / count.table), {})
                if (seen.get("rows"), seen.get("distinct")) != (count.rows, count.distinct):
                    disagree += 1
                    lost += count.expected  # a table Spark reads otherwise is as good as lost
        mid_run = sum(t.killed for t in trials)
        left = sum(t.left_files > 0 for t in trials)
        script = "extract_features" if job == "extract" else "score_batch"
        tables = "+".join(batch_faults.OUTPUTS[job])
        rows.append(
            CampaignRow(
                campaign=f"kill -9 {script}, rerun",
                trials=len(trials),
                events=sum(c.expected for t in trials for c in t.counts),
                lost=lost,
                duplicated=duplicated,
                note=(
                    f"{tables} keys; {mid_run} killed mid-run ({left} left uncommitted files), "
                    f"clean run {lake.durations[job]:.0f} s; unreadable {unreadable}, "
                    f"Spark vs delta-rs disagree {disagree}"
                ),
            )
        )
    return rows


def _writer_rows(args: argparse.Namespace, scratch: Path) -> list[CampaignRow]:
    counts = registry_faults.concurrent_writers(scratch / "writers", args.writers, args.changes)
    rows = [
        CampaignRow(
            campaign=f"{args.writers} processes x {args.changes} promotions + rollout updates",
            trials=1,
            events=counts.changes,
            lost=counts.lost,
            duplicated=counts.duplicated,
            note=f"audit/history rows {counts.audit_rows} for {counts.committed} commits",
        )
    ]
    crashes = [
        registry_faults.crash_trial(scratch / f"crash-{i}", (point, nth))
        for i, (point, nth) in enumerate(
            (p, n) for p in registry_faults.CRASH_POINTS for n in (1, 2)
        )
    ]
    started = time.monotonic()
    registry_faults.crash_trial(scratch / "crash-reference", None)
    duration = time.monotonic() - started
    rng = random.Random(args.batch_seed)
    crashes += [
        registry_faults.crash_trial(
            scratch / f"kill-{i}", None, kill_after_s=rng.uniform(0, duration)
        )
        for i in range(args.writer_kills)
    ]
    rows.append(
        CampaignRow(
            campaign="registry writer killed mid-change",
            trials=len(crashes),
            events=sum(c.committed for c in crashes),
            lost=sum(c.lost for c in crashes),
            duplicated=sum(c.duplicated for c in crashes),
            note=(
                f"self-kill before/after 4 commits + {args.writer_kills} at random; "
                f"audit/history rows {sum(c.audit_rows for c in crashes)} "
                f"for {sum(c.committed for c in crashes)} commits"
            ),
        )
    )
    return rows


def _refusal_rows(args: argparse.Namespace, scratch: Path) -> list[CampaignRow]:
    counts = registry_faults.refusals(scratch / "hostile", args.refusals)
    names = {
        "pickle": "pickled artifact",
        "tampered": "tampered byte",
        "untrusted": "untrusted skops type",
    }
    return [
        CampaignRow(
            campaign=f"{names[kind]} refused on load",
            trials=args.refusals,
            events=refused + accepted,
            lost=accepted,
            duplicated=0,
            note=f"refused {refused}, accepted {accepted}",
        )
        for kind, (refused, accepted) in counts.items()
    ]


def batch_campaigns(args: argparse.Namespace) -> list[CampaignRow]:
    """Run the batch and registry campaigns; their rows of the fault table."""
    scratch = Path(tempfile.mkdtemp(prefix="lakecast-batch-faults-"))
    try:
        rows: list[CampaignRow] = []
        # The registry's rows first: seconds, where the jobs' take minutes.
        for campaigns in (_writer_rows, _refusal_rows, _job_rows):
            done = campaigns(args, scratch)
            for row in done:
                print(f"done: {row}", file=sys.stderr, flush=True)
            rows += done
        return rows
    finally:
        if args.keep:
            print(f"scratch kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    rows = batch_campaigns(parser.parse_args())
    print(format_table(rows))


if __name__ == "__main__":
    main()
