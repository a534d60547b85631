"""A local Spark standalone cluster (one master, N workers) from pip's pyspark.

pip's pyspark ships ``bin/spark-class`` but not ``sbin/start-master.sh``, so the daemons are
started here: ``spark-class org.apache.spark.deploy.master.Master`` and one
``...deploy.worker.Worker spark://HOST:PORT`` per worker, each detached and tracked by a pid
file under the state folder. ``start`` returns once the master's JSON endpoint lists every
worker as ALIVE, so a ``spark-submit --master`` right after it gets executors.

The cluster authenticates every RPC connection (``spark.authenticate=true``) with a shared
secret kept in a 0600 file of the 0700 state folder. It is never on a command line, where
any user of the machine can read it in ``/proc/PID/cmdline``: the daemons get it in their
environment (``_SPARK_AUTH_SECRET``, which Spark reads; ``/proc/PID/environ`` is readable by
its owner only) because Spark 4 reads ``spark.authenticate.secret.file`` only on Kubernetes;
workers pass it to executors the same way, and ``spark-submit.sh`` hands it to a driver in a
0600 properties file (a driver of a ``spark://`` master must have it in its configuration).
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lakecast.errors import EnvironmentSetupError, LocalStackError
from lakecast.local import processes
from lakecast.local.ports import require_free_ports
from lakecast.local.state import private_dir, write_private

_MASTER_CLASS = "org.apache.spark.deploy.master.Master"
_WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
_POLL_S = 0.5
# Where Spark's SecurityManager looks for the shared secret before its configuration.
AUTH_SECRET_ENV = "_SPARK_AUTH_SECRET"  # noqa: S105 (a variable name, not a secret)
_STOP_TIMEOUT_S = 20.0


def spark_class_script() -> Path:
    """The ``bin/spark-class`` of the installed pyspark (found without importing pyspark)."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        msg = "pyspark is not installed in this environment: `pip install pyspark`"
        raise EnvironmentSetupError(msg)
    script = Path(next(iter(spec.submodule_search_locations))) / "bin" / "spark-class"
    if not script.is_file():
        msg = f"pyspark has no {script}: reinstall pyspark"
        raise EnvironmentSetupError(msg)
    return script


@dataclass(frozen=True)
class ClusterStatus:
    """What the pid files and the master's JSON endpoint say right now."""

    master_pid: int | None
    worker_pids: tuple[int, ...]
    alive_workers: int  # as the master sees them; 0 when the master does not answer

    @property
    def running(self) -> bool:
        return self.master_pid is not None


@dataclass
class SparkStandaloneCluster:
    """A master on ``host:master_port`` (UI on ``ui_port``) and its workers, all local."""

    state_dir: Path
    host: str = "127.0.0.1"
    master_port: int = 7077
    ui_port: int = 8080
    worker_cores: int = 1
    worker_memory: str = "1g"
    daemon_memory: str = "512m"
    python: str = sys.executable
    start_timeout_s: float = 120.0
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def master_url(self) -> str:
        return f"spark://{self.host}:{self.master_port}"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.ui_port}"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def work_dir(self) -> Path:
        return self.state_dir / "work"

    @property
    def secret_file(self) -> Path:
        """The shared secret of the cluster's daemons, executors and drivers (0600)."""
        return self.state_dir / "auth.secret"

    def _ensure_secret(self) -> None:
        private_dir(self.state_dir)
        if not self.secret_file.is_file():
            write_private(self.secret_file, secrets.token_urlsafe(32))

    def _master_pid_file(self) -> Path:
        return self.state_dir / "master.pid"

    def _worker_pid_file(self, index: int) -> Path:
        return self.state_dir / f"worker-{index}.pid"

    def _worker_pid_files(self) -> list[Path]:
        return sorted(self.state_dir.glob("worker-*.pid"))

    # -- life cycle ---------------------------------------------------------------------------

    def start(self, workers: int = 2) -> None:
        """Start the master (unless it runs) and workers 1..``workers`` that do not run yet.

        Raises:
            PortInUseError: the master's RPC or UI port is taken by another process.
            LocalStackError: a daemon exited, or the workers did not register in time; the
                message holds the tail of its log.
        """
        if workers < 0:
            msg = f"a Spark cluster needs zero or more workers, got {workers}"
            raise LocalStackError(msg)
        began = time.monotonic()
        script = spark_class_script()
        self._ensure_secret()
        master = processes.live_process(self._master_pid_file())
        if master is None:
            require_free_ports(
                self.host,
                {"Spark master": self.master_port, "Spark master UI": self.ui_port},
            )
            argv = [
                str(script), _MASTER_CLASS, "--host", self.host,
                "--port", str(self.master_port), "--webui-port", str(self.ui_port),
            ]  # fmt: skip
            master = self._spawn(argv, "master")
            processes.write_pid_file(self._master_pid_file(), master)
        self._wait(lambda state: state.get("status") == "ALIVE", [master], began, "the master")
        started = [master]
        for index in range(1, workers + 1):
            pid_file = self._worker_pid_file(index)
            worker = processes.live_process(pid_file)
            if worker is None:
                argv = [
                    str(script), _WORKER_CLASS, self.master_url, "--host", self.host,
                    "--cores", str(self.worker_cores), "--memory", self.worker_memory,
                    "--webui-port", "0", "--work-dir", str(self.work_dir / f"worker-{index}"),
                ]  # fmt: skip
                worker = self._spawn(argv, f"worker-{index}")
                processes.write_pid_file(pid_file, worker)
            started.append(worker)
        self._wait(
            lambda state: _alive_workers(state) >= workers, started, began, f"{workers} worker(s)"
        )

    def stop(self) -> list[int]:
        """Stop every worker, then the master; returns the pids that were running."""
        stopped = []
        for pid_file in [*self._worker_pid_files(), self._master_pid_file()]:
            process = processes.live_process(pid_file)
            if process is not None:
                processes.terminate(process, timeout_s=_STOP_TIMEOUT_S)
                stopped.append(process.pid)
            pid_file.unlink(missing_ok=True)
        return stopped

    def status(self) -> ClusterStatus:
        master = processes.live_process(self._master_pid_file())
        workers = [processes.live_process(path) for path in self._worker_pid_files()]
        state = self.master_state() if master else None
        return ClusterStatus(
            master_pid=master.pid if master else None,
            worker_pids=tuple(worker.pid for worker in workers if worker),
            alive_workers=_alive_workers(state or {}),
        )

    def master_state(self) -> dict[str, Any] | None:
        """The master's ``/json/`` document, or None while it does not answer."""
        try:
            with urllib.request.urlopen(f"{self.ui_url}/json/", timeout=2.0) as response:  # noqa: S310
                document: dict[str, Any] = json.loads(response.read())
                return document
        except (urllib.error.URLError, OSError, ValueError):
            return None

    # -- steps --------------------------------------------------------------------------------

    def _spawn(self, argv: list[str], name: str) -> processes.TrackedProcess:
        env = {
            **os.environ,
            "SPARK_LOCAL_IP": self.host,  # also binds the web UIs to this address
            "SPARK_DAEMON_MEMORY": self.daemon_memory,
            # Fail on a taken port instead of silently moving to the next one. The master's
            # REST submission server (on by default in Spark 4, port 6066) takes jobs without
            # authentication, and a second local master failed to start on its taken port.
            "SPARK_DAEMON_JAVA_OPTS": (
                "-Dspark.port.maxRetries=0 -Dspark.authenticate=true "
                "-Dspark.master.rest.enabled=false"
            ),
            AUTH_SECRET_ENV: self.secret_file.read_text().strip(),
            "PYSPARK_PYTHON": self.python,
            **self.extra_env,
        }
        private_dir(self.work_dir)
        return processes.spawn_detached(
            argv, log=self.logs_dir / f"{name}.out", env=env, cwd=self.state_dir
        )

    def _wait(
        self,
        ready: Callable[[dict[str, Any]], bool],
        watched: list[processes.TrackedProcess],
        began: float,
        what: str,
    ) -> None:
        deadline = began + self.start_timeout_s
        while True:
            for process in watched:
                if not process.is_alive():
                    code = process.exit_code()
                    msg = (
                        f"a Spark daemon (pid {process.pid}, exit status {code}) exited while "
                        f"waiting for {what} of {self.master_url}; last lines of "
                        f"{process.log}:\n{processes.tail(process.log)}"
                    )
                    raise LocalStackError(msg)
            state = self.master_state()
            if state is not None and ready(state):
                return
            if time.monotonic() >= deadline:
                logs = "\n".join(
                    f"--- {process.log}\n{processes.tail(process.log, 10)}" for process in watched
                )
                msg = (
                    f"{what} of {self.master_url}: not ready within "
                    f"{self.start_timeout_s:.0f} s (UI {self.ui_url}); last log lines:\n{logs}"
                )
                raise LocalStackError(msg)
            time.sleep(_POLL_S)


def _alive_workers(state: dict[str, Any]) -> int:
    return sum(1 for worker in state.get("workers", []) if worker.get("state") == "ALIVE")
