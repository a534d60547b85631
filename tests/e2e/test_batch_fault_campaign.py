"""The batch and registry fault campaigns, short: counts, never timings.

A spark-submit of each batch job killed (SIGKILL, the whole process group) at the first data
file it writes and rerun: its tables are one row per key, read alike by delta-rs and Spark.
Registry writer processes racing, and killed by themselves just before or after a commit:
every change that returned is in the audit log once, and a change has its audit row or is not
there at all. Hostile artifacts are refused on every load. The full campaigns, with random
kill moments, are ``benchmarks/faults_batch.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lakecast.testing import batch_faults, registry_faults
from lakecast.testing.batch_faults import BatchLake


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> BatchLake:
    root = tmp_path_factory.mktemp("batch-faults") / "lake"
    return batch_faults.build_lake(root, rows=2000, days=2, generate=False)


@pytest.mark.timeout(5400)  # five spark-submits: about 2 minutes idle, 40 at load average 20
def test_killed_jobs_rerun_to_one_row_per_key(lake: BatchLake) -> None:
    expected = batch_faults.expected_keys(lake)
    trials = [
        batch_faults.kill_trial(lake, job, 0, None, fresh=True, expected=expected)
        for job in batch_faults.JOBS
    ]
    for trial in trials:
        assert trial.error == ""
        for count in trial.counts:
            assert (count.lost, count.duplicated, count.unexpected) == (0, 0, 0), count
            assert count.rows == count.expected > 0
    verified = batch_faults.spark_verify(lake, trials)
    for trial in trials:
        for count in trial.counts:
            seen = verified[str(trial.out / count.table)]
            assert seen == {"rows": count.rows, "distinct": count.distinct}


def test_racing_registry_writer_processes_lose_no_change(tmp_path: Path) -> None:
    counts = registry_faults.concurrent_writers(tmp_path, processes=2, changes=5)
    assert counts.changes == 20  # 10 promotions and 10 rollout updates returned
    assert (counts.lost, counts.duplicated) == (0, 0)
    assert counts.audit_rows == counts.committed == 20


@pytest.mark.parametrize(
    ("point", "committed"),
    [
        (("before commit", 1), 0),  # the promotion
        (("after commit", 1), 1),
        (("after commit", 2), 2),  # the rollout update after it
    ],
    ids=["promotion-before", "promotion-after", "rollout-after"],
)
def test_writer_killed_at_a_commit_leaves_the_change_with_its_audit_row_or_neither(
    tmp_path: Path, point: tuple[str, int], committed: int
) -> None:
    counts = registry_faults.crash_trial(tmp_path, point)
    assert counts.committed == committed
    assert counts.audit_rows == committed
    assert (counts.lost, counts.duplicated) == (0, 0)


def test_hostile_artifacts_are_refused_on_every_load(tmp_path: Path) -> None:
    counts = registry_faults.refusals(tmp_path, attempts=3)
    assert counts == {"pickle": (3, 0), "tampered": (3, 0), "untrusted": (3, 0)}
    assert not (tmp_path / "pickle-ran").exists()
