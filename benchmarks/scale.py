"""How cost grows with data: generate -> extract -> score at growing sizes, on two masters.

    .venv/bin/python benchmarks/scale.py [--sizes 1M,4M,16M] [--masters local,cluster] \
        [--days 7] [--keep]

Each job runs through ``./spark-submit.sh`` as a user runs it (``score_batch`` with the default
read, a tiny registered champion), on ``local[2]`` and on the two-worker standalone cluster
that ``lakecast local up --spark-workers 2`` starts (its own config: free ports, a scratch state
folder; stopped at the end). Per master, size and job it prints the wall time, rows/s, the
peak RSS of the driver (the spark-submit JVM plus the Python driver; on ``local[2]`` that JVM
also runs the tasks) and of the largest executor (its JVM plus its Python workers; on
``local[2]`` the driver JVM's Python workers), the bytes the job wrote, and the growth factor
of time against the smallest size (target: <= 17x time for 16x data). The process trees are
sampled every 0.25 s with psutil.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
SUBMIT = ROOT / "spark-submit.sh"
LAKECAST = Path(sys.executable).with_name("lakecast")
MODEL = "scale"
JOBS = ("generate", "extract", "score")
_SAMPLE_S = 0.25
_MB = 1024 * 1024
# local[2] gets the driver memory of conf/spark-defaults.conf (2g, its tasks run in it); a
# cluster executor must fit the 1g a `local up` worker offers.
CLUSTER_CONF = ("--conf", "spark.executor.memory=768m")


def parse_size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("KM")) * scale)


@dataclass
class Peaks:
    """Peak resident memory seen while a job ran, in bytes."""

    driver: int = 0
    executor: int = 0


@dataclass
class JobResult:
    master: str
    events: int
    job: str
    seconds: float
    rows: int
    bytes_written: int
    peaks: Peaks = field(default_factory=Peaks)


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def _sample(submit: psutil.Process, worker_pids: list[int], peaks: Peaks) -> None:
    """One look at the trees. Under spark-submit.sh: the driver JVM and the Python driver (the
    driver), and on a local master the task workers (``pyspark.daemon`` and its forks, this
    master's executor); under each worker of a cluster: its executor JVMs and their workers."""
    driver = local_executor = 0
    try:
        # spark-submit.sh execs the driver JVM where no secret file needs cleaning up.
        tree = [submit, *submit.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for member in tree:
        try:
            command = " ".join(member.cmdline())
            rss = member.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if "pyspark.daemon" in command or "pyspark.worker" in command:
            local_executor += rss
        elif "java" in command.split(" ", 1)[0] or "python" in command.split(" ", 1)[0]:
            driver += rss
    executors = []
    for pid in worker_pids:
        try:
            executors.extend(_tree_rss(e) for e in psutil.Process(pid).children())
        except psutil.NoSuchProcess:
            continue
    peaks.driver = max(peaks.driver, driver)
    peaks.executor = max(peaks.executor, local_executor, *executors)


def _bytes_under(paths: list[Path]) -> int:
    return sum(f.stat().st_size for p in paths if p.exists() for f in p.rglob("*") if f.is_file())


class Cluster:
    """``lakecast local up --spark-workers 2`` with a config of its own."""

    def __init__(self, scratch: Path) -> None:
        from lakecast.local.ports import free_port

        ports = [free_port() for _ in range(4)]
        self.state = scratch / "state"
        self.config = scratch / "lakecast.yaml"
        scratch.mkdir(parents=True, exist_ok=True)
        local = {"state_dir": str(self.state), "broker_port": ports[0],
                 "controller_port": ports[1], "spark_master_port": ports[2],
                 "spark_master_ui_port": ports[3]}  # fmt: skip
        self.config.write_text(yaml.safe_dump({"local": local}))
        self.master = f"spark://127.0.0.1:{ports[2]}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAKECAST__")}
        env["LAKECAST_CONFIG"] = str(self.config)
        env["LAKECAST_SPARK_SECRET_FILE"] = str(self.state / "spark" / "auth.secret")
        return env

    def cli(self, *args: str) -> str:
        done = subprocess.run([str(LAKECAST), "local", *args], env=self.env(), text=True,
                              capture_output=True, timeout=600, check=False)  # fmt: skip
        if done.returncode != 0:
            msg = f"lakecast local {args}: exit {done.returncode}\n{done.stdout}{done.stderr}"
            raise RuntimeError(msg)
        return done.stdout

    def worker_pids(self) -> list[int]:
        from lakecast.local import processes

        pids = []
        for pid_file in sorted((self.state / "spark").glob("worker-*.pid")):
            process = processes.live_process(pid_file)
            if process is not None:
                pids.append(process.pid)
        return pids


def run_job(
    master: str, args: list[str], env: dict[str, str], worker_pids: list[int], log: Path
) -> tuple[float, Peaks]:
    peaks = Peaks()
    extra = CLUSTER_CONF if master.startswith("spark://") else ()
    command = [str(SUBMIT), "--master", master, "--conf", "spark.ui.enabled=false", *extra, *args]
    started = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)  # fmt: skip
    watched = psutil.Process(process.pid)
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            _sample(watched, worker_pids, peaks)
            done.wait(_SAMPLE_S)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    code = process.wait()
    seconds = time.perf_counter() - started
    done.set()
    watcher.join()
    if code != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
        msg = f"{args[0]} on {master} exited {code}; {log}:\n{tail}"
        raise RuntimeError(msg)
    return seconds, peaks


def run_size(
    master: str, events: int, days: int, lake: Path, env: dict[str, str], workers: list[int]
) -> list[JobResult]:
    from lakecast.testing.models import register_model

    lake.mkdir(parents=True)
    t = {name: lake / name for name in ("events", "features", "entity", "predictions", "registry")}
    register_model(str(t["registry"]), MODEL)
    steps = {
        "generate": (["jobs/generate_events.py", "--rows", str(events), "--days", str(days),
                      "--seed", "7", "--path", str(t["events"])], [t["events"]]),
        "extract": (["jobs/extract_features.py", "--all", "--events", str(t["events"]),
                     "--out", str(t["features"]), "--entity-features", str(t["entity"])],
                    [t["features"], t["entity"]]),
        "score": (["jobs/score_batch.py", "--model", f"{MODEL}@champion",
                   "--features", str(t["features"]), "--registry", str(t["registry"]),
                   "--predictions", str(t["predictions"])], [t["predictions"]]),
    }  # fmt: skip
    results = []
    for job, (args, outputs) in steps.items():
        seconds, peaks = run_job(master, args, env, workers, lake / f"{job}.log")
        rows = events if job != "score" else _rows(t["features"])
        results.append(JobResult(master, events, job, seconds, rows, _bytes_under(outputs), peaks))
        print(_row(results[-1]), flush=True)
    return results


def _rows(path: Path) -> int:
    from deltalake import DeltaTable

    return int(DeltaTable(str(path)).to_pyarrow_dataset().count_rows())


HEADER = (
    f"{'master':<14}{'events':>11} {'job':<9}{'seconds':>9}{'rows/s':>10}"
    f"{'driver MB':>11}{'executor MB':>13}{'written MB':>12}{'time x':>8}{'data x':>8}"
)


def _row(r: JobResult, base: JobResult | None = None) -> str:
    growth = f"{r.seconds / base.seconds:>8.2f}{r.events / base.events:>8.1f}" if base else ""
    return (
        f"{r.master[:13]:<14}{r.events:>11,} {r.job:<9}{r.seconds:>9.1f}"
        f"{r.rows / r.seconds:>10,.0f}{r.peaks.driver / _MB:>11,.0f}"
        f"{r.peaks.executor / _MB:>13,.0f}{r.bytes_written / _MB:>12,.1f}{growth}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M,4M,16M", help="events per run, e.g. 1M,4M,16M")
    parser.add_argument("--masters", default="local,cluster", help="local (local[2]), cluster")
    parser.add_argument("--days", type=int, default=7, help="dates the events spread over")
    parser.add_argument("--keep", action="store_true", help="keep the scratch lakes")
    args = parser.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    masters = [m.strip() for m in args.masters.split(",")]
    scratch = Path(tempfile.mkdtemp(prefix="lakecast-scale-"))
    print(f"scratch {scratch}; load average {os.getloadavg()}; {os.cpu_count()} CPUs", flush=True)
    print(HEADER, flush=True)
    results: list[JobResult] = []
    try:
        for name in masters:
            cluster = Cluster(scratch / "cluster") if name == "cluster" else None
            try:
                if cluster is not None:
                    cluster.cli("up", "--spark-workers", "2")
                master = cluster.master if cluster else "local[2]"
                env = cluster.env() if cluster else {
                    k: v for k, v in os.environ.items() if not k.startswith("LAKECAST__")
                }  # fmt: skip
                workers = cluster.worker_pids() if cluster else []
                for events in sizes:
                    lake = scratch / f"{name}-{events}"
                    results.extend(run_size(master, events, args.days, lake, env, workers))
                    if not args.keep:
                        shutil.rmtree(lake, ignore_errors=True)
            finally:
                if cluster is not None:
                    cluster.cli("down")
    finally:
        print(f"\nload average at the end {os.getloadavg()}")
        print(HEADER)
        for result in results:
            base = next(b for b in results if (b.master, b.job) == (result.master, result.job))
            print(_row(result, base))
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
