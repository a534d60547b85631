"""Fault campaigns on the batch jobs: SIGKILL a spark-submit mid-run, rerun it, count keys.

Shared by ``benchmarks/faults_batch.py`` and ``tests/e2e/test_batch_fault_campaign.py``. A
small lake is built by the real jobs (``generate_events``, ``extract_features``, a tiny model
registered as ``@champion``, ``score_batch``); its clean tables are the expected keys. A trial
then runs ``extract_features.py`` or ``score_batch.py`` through ``./spark-submit.sh`` into a
table of its own (fresh, or a copy of the clean one so the run replaces or MERGEs into it),
kills the whole process group (the JVM, the Python driver, Spark's Python workers) after a
random delay, reruns the job to completion and counts the table with delta-rs: every expected
key once (``lost`` = expected keys missing, ``duplicated`` = rows beyond one per key).
Spark's own reading of every trial's tables comes last, in one ``spark-submit`` of this file
(``--verify``), so that the campaign starts one JVM for it, not one a trial.

The jobs' keys: ``features`` one row per ``event_id``; ``entity_features`` one per
(``snapshot_date``, ``entity_type``, ``entity_id``); ``predictions`` one per (``event_id``,
``model_name``, ``model_version``), the columns ``scoring/writer.py`` MERGEs on.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

Job = Literal["extract", "score"]
JOBS: tuple[Job, ...] = ("extract", "score")
KEYS: dict[str, tuple[str, ...]] = {
    "features": ("event_id",),
    "entity_features": ("snapshot_date", "entity_type", "entity_id"),
    "predictions": ("event_id", "model_name", "model_version"),
}
OUTPUTS: dict[str, tuple[str, ...]] = {
    "extract": ("features", "entity_features"),
    "score": ("predictions",),
}
MODEL = "campaign"
SPARK_ARGS = (
    "--master",
    "local[1]",
    "--conf",
    "spark.sql.shuffle.partitions=2",
    "--conf",
    "spark.ui.enabled=false",
)
# A clean extract of 2,000 events took 25 s on an idle 2-core machine and over 600 s on the
# same machine at load average 20.
JOB_TIMEOUT_S = 1800.0


def project_root() -> Path:
    from lakecast.config import PROJECT_ROOT

    return Path(PROJECT_ROOT)


def _env() -> dict[str, str]:
    # The jobs take their tables from the command line, never from a caller's overrides.
    return {k: v for k, v in os.environ.items() if not k.startswith("LAKECAST__")}


def submit_command(*args: str) -> list[str]:
    return [str(project_root() / "spark-submit.sh"), *SPARK_ARGS, *args]


def run_to_completion(args: Sequence[str], log: Path) -> float:
    """Run ``./spark-submit.sh ARGS`` to its end; its wall time. Raises on a failed run."""
    started = time.monotonic()
    with log.open("ab") as out:
        done = subprocess.run(
            submit_command(*args),
            cwd=project_root(),
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=JOB_TIMEOUT_S,
            check=False,
        )
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        msg = f"spark-submit {' '.join(args)} exited {done.returncode}:\n{tail}"
        raise RuntimeError(msg)
    return time.monotonic() - started


def _first_data_file(out: Path) -> bool:
    return any(p for p in out.rglob("*.parquet") if "_delta_log" not in p.parts)


def run_and_kill(args: Sequence[str], delay_s: float | None, log: Path, out: Path) -> bool:
    """Start ``./spark-submit.sh ARGS`` in a process group of its own and SIGKILL the group
    after ``delay_s``, or (None) as soon as a data file appears under ``out``; True if it was
    still running then (False: it had finished)."""
    deadline = time.monotonic() + (JOB_TIMEOUT_S if delay_s is None else delay_s)
    with log.open("ab") as out_log:
        process = subprocess.Popen(
            submit_command(*args),
            cwd=project_root(),
            env=_env(),
            stdout=out_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        while process.poll() is None:
            if time.monotonic() >= deadline or (delay_s is None and _first_data_file(out)):
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                return True
            time.sleep(0.05)
        return False


@dataclass(frozen=True)
class BatchLake:
    """The tables of one campaign lake; ``durations`` of its clean runs, in seconds."""

    root: Path
    durations: dict[str, float] = field(default_factory=dict)

    def table(self, name: str) -> str:
        return str(self.root / name)

    @property
    def logs(self) -> Path:
        path = self.root / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def job_args(self, job: Job, out: Path) -> list[str]:
        """The job's arguments, writing its outputs under ``out``."""
        if job == "extract":
            return ["jobs/extract_features.py", "--all", "--events", self.table("events"),
                    "--out", str(out / "features"),
                    "--entity-features", str(out / "entity_features")]  # fmt: skip
        return ["jobs/score_batch.py", "--model", f"{MODEL}@champion",
                "--features", self.table("features"), "--registry", self.table("registry"),
                "--predictions", str(out / "predictions")]  # fmt: skip


def write_events_directly(path: str, rows: int, days: int, seed: int) -> None:
    """A small ``events`` table written with delta-rs, no JVM: random users, products,
    categories and event types over ``days`` days (the generator job costs a spark-submit)."""
    from deltalake import write_deltalake

    from lakecast.features.vocab import CATEGORIES, EVENT_TYPES
    from lakecast.lake.tables import EVENTS
    from lakecast.testing.events import make_events

    rng = random.Random(seed)  # noqa: S311 - test data
    start = datetime(2026, 3, 2, tzinfo=UTC)
    table = make_events(
        {
            "event_id": f"e{i:06d}",
            "user_id": f"u{rng.randrange(rows // 10 + 1)}",
            "session_id": f"s{rng.randrange(rows // 4 + 1)}",
            "product_id": f"p{rng.randrange(50)}",
            "category": rng.choice(list(CATEGORIES)),
            "event_type": rng.choice(list(EVENT_TYPES)),
            "price": round(rng.uniform(1, 200), 2),
            "ts": start + timedelta(seconds=rng.uniform(0, days * 86400)),
        }
        for i in range(rows)
    )
    write_deltalake(path, table, partition_by=list(EVENTS.partition_by))


def build_lake(
    root: Path, rows: int = 3000, days: int = 3, seed: int = 9, *, generate: bool = True
) -> BatchLake:
    """Make events (the generator job, or with :func:`write_events_directly` when not
    ``generate``), extract their features, register a tiny champion and score it (unless not
    ``generate``: then the trials create ``predictions``), each job through
    ``./spark-submit.sh``; the clean runs are timed."""
    from lakecast.testing.models import register_model

    root.mkdir(parents=True, exist_ok=True)
    lake = BatchLake(root)
    if generate:
        run_to_completion(["jobs/generate_events.py", "--rows", str(rows), "--days", str(days),
                           "--seed", str(seed), "--start-date", "2026-03-02",
                           "--path", lake.table("events")], lake.logs / "generate.log")  # fmt: skip
    else:
        write_events_directly(lake.table("events"), rows, days, seed)
    lake.durations["extract"] = run_to_completion(
        lake.job_args("extract", root), lake.logs / "extract.log"
    )
    register_model(lake.table("registry"), MODEL)
    if generate:
        lake.durations["score"] = run_to_completion(
            lake.job_args("score", root), lake.logs / "score.log"
        )
    return lake


# ---- counting -------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyCount:
    """One table's rows against the keys it must hold once each."""

    table: str
    rows: int
    distinct: int
    expected: int
    lost: int  # expected keys missing
    duplicated: int  # rows beyond one per key
    unexpected: int  # keys that should not be there at all


def _key_tuples(table: Any, keys: Sequence[str]) -> list[tuple[Any, ...]]:
    columns = [table.column(k).to_pylist() for k in keys]
    return list(zip(*columns, strict=True))


def read_keys(path: str, keys: Sequence[str]) -> list[tuple[Any, ...]]:
    """Every row's key, read with delta-rs (raises if it is not a readable Delta table)."""
    from deltalake import DeltaTable

    return _key_tuples(DeltaTable(path).to_pyarrow_table(columns=list(keys)), keys)


def count_keys(
    name: str, found: Sequence[tuple[Any, ...]], expected: set[tuple[Any, ...]]
) -> KeyCount:
    present = set(found)
    return KeyCount(
        table=name,
        rows=len(found),
        distinct=len(present),
        expected=len(expected),
        lost=len(expected - present),
        duplicated=len(found) - len(present),
        unexpected=len(present - expected),
    )


def expected_keys(lake: BatchLake) -> dict[str, set[tuple[Any, ...]]]:
    """The keys of the clean tables (predictions: every feature row, by the champion)."""
    from lakecast.registry import Registry

    expected = {name: set(read_keys(lake.table(name), KEYS[name])) for name in OUTPUTS["extract"]}
    champion = Registry(lake.table("registry")).resolve(f"{MODEL}@champion")
    expected["predictions"] = {
        (event_id, champion.name, champion.version) for (event_id,) in expected["features"]
    }
    return expected


def unreferenced_files(path: Path) -> int:
    """Data files under a Delta table that no commit of its log adds: what a run killed after
    writing files and before committing leaves behind (harmless; VACUUM removes them)."""
    log = path / "_delta_log"
    added: set[str] = set()
    for entry in sorted(log.glob("*.json")) if log.is_dir() else []:
        for line in entry.read_text().splitlines():
            action = json.loads(line) if line.strip() else {}
            if "add" in action:
                added.add(unquote(action["add"]["path"]))
    files = (p for p in path.rglob("*.parquet") if "_delta_log" not in p.parts)
    return sum(1 for p in files if p.relative_to(path).as_posix() not in added)


# ---- trials ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KillTrial:
    """One kill and rerun of a job: where it was killed and what the rerun left."""

    job: Job
    out: Path
    fresh: bool  # the killed run created its tables (else it replaced or MERGEd into a copy)
    delay_s: float | None  # None: killed at the first data file it wrote
    killed: bool  # still running at the kill (False: it had finished)
    left_files: int  # data files the killed run wrote and never committed
    counts: tuple[KeyCount, ...]
    error: str = ""  # a table delta-rs could not read

    @property
    def lost(self) -> int:
        return sum(c.lost for c in self.counts)

    @property
    def duplicated(self) -> int:
        return sum(c.duplicated + c.unexpected for c in self.counts)


def kill_trial(
    lake: BatchLake,
    job: Job,
    number: int,
    delay_s: float | None,
    *,
    fresh: bool,
    expected: dict[str, set[tuple[Any, ...]]],
) -> KillTrial:
    """Kill ``job`` after ``delay_s`` (None: at its first data file), rerun it to completion,
    count its output tables."""
    out = lake.root / "trials" / f"{job}-{number}"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if not fresh:
        for name in OUTPUTS[job]:
            shutil.copytree(lake.root / name, out / name)
    log = lake.logs / f"{job}-{number}.log"
    args = lake.job_args(job, out)
    killed = run_and_kill(args, delay_s, log, out)
    left = sum(unreferenced_files(out / name) for name in OUTPUTS[job] if (out / name).exists())
    run_to_completion(args, log)
    counts = []
    error = ""
    for name in OUTPUTS[job]:
        try:
            found = read_keys(str(out / name), KEYS[name])
        except Exception as exc:  # an unreadable table is what the trial looks for
            error = f"{name}: {exc!r}"
            found = []
        counts.append(count_keys(name, found, expected[name]))
    trial = KillTrial(job, out, fresh, delay_s, killed, left, tuple(counts), error)
    summary = asdict(trial) | {"out": str(out), "lost": trial.lost, "duplicated": trial.duplicated}
    (lake.logs / f"{job}-{number}.json").write_text(json.dumps(summary, indent=1))
    return trial


def kill_delay(rng: random.Random, duration_s: float) -> float:
    """A random moment in the second half of a clean run (its first half, ~15-20 s here, is
    the JVM and the Spark session starting, before anything is read or written)."""
    return rng.uniform(duration_s / 2, duration_s)


def campaign(lake: BatchLake, job: Job, trials: int, seed: int = 0) -> list[KillTrial]:
    """``trials`` kill-and-rerun trials of ``job``, alternately into fresh and existing tables."""
    rng = random.Random(seed)  # noqa: S311 - a test schedule, not a secret
    expected = expected_keys(lake)
    return [
        kill_trial(
            lake, job, i, kill_delay(rng, lake.durations[job]), fresh=i % 2 == 0, expected=expected
        )
        for i in range(trials)
    ]


# ---- Spark's reading of the trials' tables --------------------------------------------------


def spark_verify(lake: BatchLake, trials: Iterable[KillTrial]) -> dict[str, dict[str, int]]:
    """Read every trial's tables with Spark (one ``spark-submit`` of this file): per table
    path, its rows and distinct keys as Spark counts them; ``-1`` where Spark failed."""
    tables = {
        str(trial.out / name): list(KEYS[name]) for trial in trials for name in OUTPUTS[trial.job]
    }
    request = lake.root / "verify.json"
    request.write_text(json.dumps(tables))
    result = lake.root / "verified.json"
    run_to_completion([str(Path(__file__).resolve()), "--verify", str(request), str(result)],
                      lake.logs / "verify.log")  # fmt: skip
    verified: dict[str, dict[str, int]] = json.loads(result.read_text())
    return verified


def _verify_main(request: str, result: str) -> int:
    from lakecast.spark import get_spark

    spark = get_spark("lakecast-verify-fault-trials")
    counts: dict[str, dict[str, int]] = {}
    for path, keys in json.loads(Path(request).read_text()).items():
        try:
            frame = spark.read.format("delta").load(path)
            counts[path] = {
                "rows": frame.count(),
                "distinct": frame.select(*keys).distinct().count(),
            }
        except Exception:  # counted as unreadable by the campaign
            counts[path] = {"rows": -1, "distinct": -1}
    Path(result).write_text(json.dumps(counts))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--verify":
        sys.exit(_verify_main(sys.argv[2], sys.argv[3]))
    sys.exit("usage: spark-submit batch_faults.py --verify REQUEST.json RESULT.json")
