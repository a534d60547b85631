"""A local two-worker Spark standalone cluster started as a user starts it, and jobs on it.

``lakecast local up --spark-workers 2`` (the console script, in a subprocess) with a config of
its own (free ports, a temporary state folder) starts the master, two workers and the broker
the ``up`` command always starts (the archive job reads its topics). Every worker also offers
one *fake* GPU (``deploy/spark/fake-gpu-discovery.sh`` via ``SPARK_WORKER_OPTS``), which an
application sees only where it asks for ``spark.executor.resource.gpu.amount``. Jobs go
through ``./spark-submit.sh --master spark://...``, which ships ``lib/`` as ``--py-files``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lakecast.local.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
SUBMIT = ROOT / "spark-submit.sh"
LAKECAST = Path(sys.executable).with_name("lakecast")
FAKE_GPU_SCRIPT = ROOT / "deploy" / "spark" / "fake-gpu-discovery.sh"
# Small and quick: two shuffle partitions, no UI; 768m leaves room in a 1g worker.
CLUSTER_SPARK = (
    "--conf", "spark.sql.shuffle.partitions=2",
    "--conf", "spark.ui.enabled=false",
    "--conf", "spark.executor.memory=768m",
)  # fmt: skip
# One job at load 18 on 2 cores: up to 5 min seen; a stuck one is killed at 10.
JOB_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class LocalCluster:
    """The config the CLI was given and what it started."""

    config: Path
    state_dir: Path
    bootstrap: str
    master_port: int

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.master_port}"

    @property
    def spark_state(self) -> Path:
        return self.state_dir / "spark"

    @property
    def work_dir(self) -> Path:
        """Where the workers keep each application's executor logs."""
        return self.spark_state / "work"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAKECAST__")}
        env["LAKECAST_CONFIG"] = str(self.config)
        # The cluster authenticates: spark-submit.sh gives the driver its secret (never in argv).
        env["LAKECAST_SPARK_SECRET_FILE"] = str(self.spark_state / "auth.secret")
        env["SPARK_WORKER_OPTS"] = (
            "-Dspark.worker.resource.gpu.amount=1 "
            f"-Dspark.worker.resource.gpu.discoveryScript={FAKE_GPU_SCRIPT}"
        )
        return env

    def cli(self, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        """``lakecast local ARGS``; raises with its output if it fails."""
        done = subprocess.run(
            [str(LAKECAST), "local", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if done.returncode != 0:
            msg = f"lakecast local {args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            raise AssertionError(msg)
        return done

    def start_submit(self, master: str, *args: str, log: Path) -> subprocess.Popen[str]:
        """Start ``./spark-submit.sh --master MASTER ... ARGS`` writing to ``log``."""
        extra = CLUSTER_SPARK if master.startswith("spark://") else CLUSTER_SPARK[:4]
        with log.open("w") as out:
            return subprocess.Popen(
                [str(SUBMIT), "--master", master, *extra, *args],
                cwd=ROOT,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )

    def submit(self, master: str, *args: str, log: Path) -> dict[str, Any]:
        """Run a job to its end; its JSON summary (the last JSON line), or fail naming the log."""
        process = self.start_submit(master, *args, log=log)
        try:
            code = process.wait(timeout=JOB_TIMEOUT_S)
        finally:
            # A timeout (ours or pytest-timeout's) must not leave the job's JVM and Python
            # driver running: they are in their own session, so pytest's end does not stop them.
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        output = log.read_text()
        if code != 0:
            msg = f"spark-submit {args} on {master} exited {code}; {log}:\n{output[-4000:]}"
            raise AssertionError(msg)
        return last_json(output)


def last_json(output: str) -> dict[str, Any]:
    """A job's JSON summary: the last output line that parses as a JSON object and is not a
    log record (Spark's and lakecast's JSON log lines carry a ``level``); {} if none."""
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            try:
                parsed: dict[str, Any] = json.loads(line)
            except ValueError:
                continue
            if isinstance(parsed, dict) and "level" not in parsed:
                return parsed
    return {}


def start_cluster(root: Path) -> LocalCluster:
    """Write a config (free ports, state under ``root``) and run ``lakecast local up``."""
    ports = [free_port() for _ in range(4)]
    state_dir = root / "state"
    local = {
        "state_dir": str(state_dir),
        "broker_port": ports[0],
        "controller_port": ports[1],
        "spark_master_port": ports[2],
        "spark_master_ui_port": ports[3],
    }
    bootstrap = f"127.0.0.1:{ports[0]}"
    config = root / "lakecast.yaml"
    config.write_text(yaml.safe_dump({"local": local, "kafka": {"bootstrap_servers": bootstrap}}))
    cluster = LocalCluster(config, state_dir, bootstrap, ports[2])
    try:
        up = cluster.cli("up", "--spark-workers", "2")
    except BaseException:
        cluster.cli("down", timeout_s=120)
        raise
    if "2 alive" not in up.stdout:
        cluster.cli("down", timeout_s=120)
        raise AssertionError(f"lakecast local up did not report 2 workers:\n{up.stdout}")
    return cluster
