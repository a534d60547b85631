"""Spark's safe defaults, checked on real JVMs: a local driver listens on 127.0.0.1 only, and
the local standalone cluster authenticates with a secret that is on no command line.

The app submitted here reports what its own driver JVM listens on (its parent process) and
sums numbers on the executors; command lines are read from /proc while it runs.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from lakecast.local import processes
from lakecast.local.ports import free_port
from lakecast.local.spark_cluster import AUTH_SECRET_ENV, SparkStandaloneCluster, spark_class_script

ROOT = Path(__file__).resolve().parents[2]
SUBMIT = ROOT / "spark-submit.sh"
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1"}

APP = """
import json, os, sys
import psutil
from pyspark.sql import SparkSession

spark = SparkSession.builder.getOrCreate()
total = spark.sparkContext.parallelize(range(1000), 2).map(lambda x: x * 2).sum()
jvm = psutil.Process(os.getppid())  # spark-submit's JVM started this Python driver
listening = sorted({c.laddr.ip for c in jvm.net_connections("inet") if c.status == "LISTEN"})
conf = dict(spark.sparkContext.getConf().getAll())
print(json.dumps({"sum": total, "listening": listening, "ui": spark.sparkContext.uiWebUrl,
                  "authenticate": conf.get("spark.authenticate")}))
spark.stop()
"""

SESSION = """
import json, sys
import psutil
from lakecast.spark import get_spark

spark = get_spark("loopback-check", master="local[1]", conf={"spark.ui.enabled": "true"})
assert spark.range(10).count() == 10
jvms = [p for p in psutil.Process().children(recursive=True) if p.name() == "java"]
listening = sorted({c.laddr.ip for j in jvms for c in j.net_connections("inet")
                    if c.status == "LISTEN"})
print(json.dumps({"listening": listening, "jvms": len(jvms), "ui": spark.sparkContext.uiWebUrl}))
"""


def _last_json(output: str) -> dict[str, Any]:
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            found: dict[str, Any] = json.loads(line)
            return found
    raise AssertionError(f"no JSON line in:\n{output[-3000:]}")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKECAST__")}
    env.pop("SPARK_LOCAL_IP", None)
    env.pop("LAKECAST_SPARK_SECRET_FILE", None)
    return {**env, **extra}


@pytest.fixture
def app(tmp_path: Path) -> Path:
    path = tmp_path / "report_app.py"
    path.write_text(APP)
    return path


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SparkStandaloneCluster]:
    stack = SparkStandaloneCluster(
        state_dir=tmp_path / "state" / "spark",
        master_port=free_port(),
        ui_port=free_port(),
        worker_cores=1,
        worker_memory="1g",
    )
    try:
        stack.start(workers=1)
        yield stack
    finally:
        stack.stop()


def test_a_local_submit_listens_on_loopback_only(app: Path) -> None:
    done = subprocess.run(
        [str(SUBMIT), "--master", "local[1]", str(app)],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=420, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = _last_json(done.stdout)
    assert report["sum"] == 999000
    assert report["ui"].startswith("http://127.0.0.1:")  # the UI is on: it is checked too
    assert report["listening"], "the driver JVM listens on nothing?"
    assert set(report["listening"]) <= LOOPBACK, report["listening"]


def test_get_spark_binds_a_local_session_to_loopback() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SESSION],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = _last_json(done.stdout)
    assert report["jvms"] == 1
    assert report["ui"].startswith("http://127.0.0.1:")
    assert report["listening"]
    assert set(report["listening"]) <= LOOPBACK, report["listening"]


def test_the_local_cluster_authenticates_and_no_command_line_holds_the_secret(
    cluster: SparkStandaloneCluster, app: Path
) -> None:
    secret = cluster.secret_file.read_text().strip()
    assert len(secret) >= 32
    assert stat.S_IMODE(cluster.secret_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cluster.state_dir.stat().st_mode) == 0o700

    leftovers = set((ROOT / ".state").glob("submit-*.properties"))
    submit = subprocess.Popen(
        [str(SUBMIT), "--master", cluster.master_url, "--conf", "spark.ui.enabled=false",
         "--conf", "spark.executor.memory=512m", str(app)],
        cwd=ROOT, env=_env(LAKECAST_SPARK_SECRET_FILE=str(cluster.secret_file)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    daemons = cluster.status()
    roots = [daemons.master_pid, *daemons.worker_pids, submit.pid]
    cmdlines: dict[int, str] = {}
    while submit.poll() is None:
        for pid in roots:
            try:
                root = psutil.Process(pid)
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            for process in tree:  # one that ends mid-read must not hide the others
                try:
                    cmdlines[process.pid] = " ".join(process.cmdline())
                except psutil.Error:
                    continue
        time.sleep(0.1)
    out, err = submit.communicate()
    assert submit.returncode == 0, err[-3000:]
    report = _last_json(out)
    assert report["sum"] == 999000  # computed by the cluster's executor
    assert report["authenticate"] == "true"
    roles = {
        "master": "org.apache.spark.deploy.master.Master",
        "worker": "org.apache.spark.deploy.worker.Worker",
        "driver": "org.apache.spark.deploy.SparkSubmit",
        "executor": "org.apache.spark.executor.CoarseGrainedExecutorBackend",
    }
    for role, main_class in roles.items():
        found = [line for line in cmdlines.values() if main_class in line]
        assert found, f"never saw the {role}'s process"
        assert not [line for line in found if secret in line], f"the {role}'s argv has the secret"
        if role in ("master", "worker"):
            assert all("-Dspark.authenticate=true" in line for line in found)
    assert not [line for line in cmdlines.values() if secret in line]
    # The driver's 0600 properties file with the secret is gone with the job.
    assert set((ROOT / ".state").glob("submit-*.properties")) <= leftovers


def test_a_worker_without_the_secret_cannot_join(
    cluster: SparkStandaloneCluster, tmp_path: Path
) -> None:
    argv = [
        str(spark_class_script()), "org.apache.spark.deploy.worker.Worker", cluster.master_url,
        "--host", "127.0.0.1", "--cores", "1", "--memory", "512m", "--webui-port", "0",
        "--work-dir", str(tmp_path / "intruder"),
    ]  # fmt: skip
    env = {
        **_env(),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_DAEMON_MEMORY": "256m",
        "SPARK_DAEMON_JAVA_OPTS": "-Dspark.authenticate=true",
        AUTH_SECRET_ENV: "not-the-cluster-secret",
    }
    intruder = processes.spawn_detached(argv, log=tmp_path / "intruder.out", env=env)
    try:
        deadline = time.monotonic() + 90
        log = Path(intruder.log)
        while "Failed to connect to master" not in log.read_text():
            assert time.monotonic() < deadline, processes.tail(log)
            assert intruder.is_alive(), processes.tail(log)
            time.sleep(0.5)
        refused = log.read_text()
        assert "SaslException" in refused  # the master's authentication refused it
        assert "Successfully registered with master" not in refused
        state = cluster.master_state() or {}
        alive = [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]
        assert len(alive) == 1, state.get("workers")
    finally:
        processes.terminate(intruder, timeout_s=10)


def test_the_master_takes_no_unauthenticated_rest_submissions(
    cluster: SparkStandaloneCluster,
) -> None:
    master = psutil.Process(cluster.status().master_pid or 0)
    listening = {c.laddr.port for c in master.net_connections("inet") if c.status == "LISTEN"}
    assert cluster.master_port in listening
    assert 6066 not in listening  # Spark 4's REST submission server is off
    assert "-Dspark.master.rest.enabled=false" in " ".join(master.cmdline())
