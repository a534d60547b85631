"""The lake's run lock and step ledger on real Delta tables (delta-rs): one holder at a time,
even when processes race for a free lock; released, expired and refused as documented."""

from __future__ import annotations

import json
import multiprocessing
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from lakecast.errors import RunLockedError, ScheduleError
from lakecast.schedule.ledger import finished_steps, record_step
from lakecast.schedule.lock import acquire, current_holder, holding, release
from lakecast.schedule.tables import ScheduleTables

RACERS = 4
ROUNDS = 3


def _race(root: str, name: str, start_at: float, results: multiprocessing.Queue) -> None:
    tables = ScheduleTables(root)
    time.sleep(max(0.0, start_at - time.time()))
    try:
        lease = acquire(tables, name, lease=timedelta(minutes=5))
    except RunLockedError as exc:
        results.put(("refused", str(exc)))
    else:
        results.put(("won", lease.owner))


@pytest.mark.parametrize("round_number", range(ROUNDS))
def test_processes_racing_for_a_free_lock_one_wins(tmp_path: Path, round_number: int) -> None:
    root = str(tmp_path / "_schedule")
    ScheduleTables(root).ensure("locks")
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = context.Queue()
    start_at = time.time() + 3.0  # every process imported and waiting before the start
    procs = [
        context.Process(target=_race, args=(root, "daily/2026-01-02", start_at, results))
        for _ in range(RACERS)
    ]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    winners = [who for kind, who in outcomes if kind == "won"]
    refusals = [text for kind, text in outcomes if kind == "refused"]
    assert len(winners) == 1, outcomes
    assert len(refusals) == RACERS - 1
    for text in refusals:
        assert "daily/2026-01-02 is already running: locked by" in text
        assert winners[0] in text  # the refusal names the holder
    holder = current_holder(ScheduleTables(root), "daily/2026-01-02")
    assert holder is not None and holder["owner"] == winners[0]


def test_a_released_lock_can_be_taken_again_and_dates_are_independent(tmp_path: Path) -> None:
    tables = ScheduleTables(str(tmp_path / "_schedule"))
    with holding(tables, "daily/2026-01-01") as first:
        other = acquire(tables, "daily/2026-01-02")  # another date: its own lock
        with pytest.raises(RunLockedError, match=r"daily/2026-01-01 is already running"):
            acquire(tables, "daily/2026-01-01")
        release(tables, other)
    assert current_holder(tables, "daily/2026-01-01") is None
    again = acquire(tables, "daily/2026-01-01")
    assert again.seq == first.seq + 1
    release(tables, again)


def test_an_expired_lease_no_longer_holds(tmp_path: Path) -> None:
    tables = ScheduleTables(str(tmp_path / "_schedule"))
    crashed = acquire(tables, "daily/2026-01-03", lease=timedelta(seconds=0.5))
    time.sleep(0.8)  # the holder "died": never released
    taken = acquire(tables, "daily/2026-01-03")
    assert taken.seq == crashed.seq + 1
    release(tables, crashed)  # the old holder coming back does not free the new one
    assert current_holder(tables, "daily/2026-01-03")["owner"] == taken.owner  # type: ignore[index]
    with pytest.raises(ScheduleError, match="lease must be positive"):
        acquire(tables, "daily/x", lease=timedelta(0))


def test_the_ledger_records_and_replaces_a_step(tmp_path: Path) -> None:
    tables = ScheduleTables(str(tmp_path / "_schedule"))
    day = date(2026, 1, 2)
    assert finished_steps(tables, "daily", day) == {}
    record_step(tables, "daily", day, "extract", run_id="r1", seconds=1.5, summary={"rows": 3})
    record_step(tables, "daily", day, "extract", run_id="r2", seconds=2.0, summary={"rows": 4})
    record_step(tables, "daily", date(2026, 1, 3), "score", run_id="r3", seconds=1, summary={})
    found = finished_steps(tables, "daily", day)
    assert list(found) == ["extract"]
    assert (found["extract"].run_id, found["extract"].summary) == ("r2", {"rows": 4})


def test_a_second_run_of_a_locked_date_is_refused_by_the_cli(tmp_path: Path) -> None:
    """The real ``lakecast`` command, pointed at a lake whose date another process holds."""
    import os
    import subprocess
    import sys

    tables = ScheduleTables(str(tmp_path / "lake" / "_schedule"))
    held = acquire(tables, "daily/2026-01-02")
    env = {**os.environ, "LAKECAST__LAKE__ROOT": str(tmp_path / "lake")}
    cli = Path(sys.executable).with_name("lakecast")
    done = subprocess.run(
        [str(cli), "run", "daily", "--date", "2026-01-02"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""  # no step ran
    assert done.stderr.startswith("error: daily/2026-01-02 is already running: locked by ")
    assert held.owner in done.stderr
    release(tables, held)


def test_finished_steps_are_skipped_without_starting_spark(tmp_path: Path) -> None:
    from lakecast.config import load_settings
    from lakecast.schedule.daily import STEPS, DailyPlan, run_daily

    cfg = load_settings(environ={"LAKECAST__LAKE__ROOT": str(tmp_path / "lake")})
    plan = DailyPlan.from_settings(cfg)
    day = date(2026, 1, 5)
    tables = ScheduleTables(plan.schedule_root)
    for step in STEPS:
        record_step(tables, "daily", day, step, run_id="earlier", seconds=1.0, summary={})

    def no_spark() -> None:
        pytest.fail("a run with nothing to do started Spark")

    lines: list[str] = []
    outcomes = run_daily(plan, day, spark=no_spark, emit=lines.append)  # type: ignore[arg-type]
    assert [(o.step, o.status) for o in outcomes] == [(s, "skipped") for s in STEPS]
    assert [json.loads(line)["summary"]["run_id"] for line in lines] == ["earlier"] * len(STEPS)
    assert current_holder(tables, "daily/2026-01-05") is None  # released after the run


def test_bad_steps_and_ranges_are_refused_by_name() -> None:
    from lakecast.schedule.daily import check_steps, dates_between

    with pytest.raises(ScheduleError, match=r"unknown step\(s\) 'train'"):
        check_steps(["score", "train"])
    assert check_steps(["quality", "extract"]) == ("extract", "quality")  # the run's order
    with pytest.raises(ScheduleError, match="--to 2026-01-01 is before --from 2026-01-03"):
        list(dates_between(date(2026, 1, 3), date(2026, 1, 1)))
    assert list(dates_between(date(2026, 1, 30), date(2026, 2, 1))) == [
        date(2026, 1, 30),
        date(2026, 1, 31),
        date(2026, 2, 1),
    ]
