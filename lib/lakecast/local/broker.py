"""A real single-node KRaft Apache Kafka broker, run from the resolved jars.

The same class serves ``lakecast local up`` and the test fixtures: the storage is formatted once
(``kafka.tools.StorageTool format --standalone``), then ``kafka.Kafka server.properties`` runs
detached in its own session, logging under the state folder, tracked by a pid file. ``start``
returns only once the broker answers a DescribeCluster request, so a caller can produce at once;
``stop`` then ``start`` reuses the formatted storage, as a broker restart in production would.
Given :class:`~lakecast.local.security.SecureBrokerFiles`, the broker listens with SASL_SSL
(SCRAM-SHA-512) and authorizes with ACLs instead (see :mod:`lakecast.local.security`).
Given a static quorum (``quorum_voters``) and a shared ``cluster_id``, it is one node of a
multi-node cluster (:mod:`lakecast.local.cluster`): formatted without ``--standalone``, and
started with :meth:`LocalBroker.launch` on every node before any waits, since no node answers
until a majority of the controllers runs.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import string
import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lakecast.config import PROJECT_ROOT
from lakecast.errors import EnvironmentSetupError, LocalStackError
from lakecast.local import processes
from lakecast.local.ports import require_free_ports
from lakecast.local.security import ADMIN_USER, SecureBrokerFiles
from lakecast.local.state import private_dir, write_private

SERVER_TEMPLATE = PROJECT_ROOT / "conf" / "kafka" / "server.properties"
LOG4J_CONFIG = PROJECT_ROOT / "conf" / "kafka" / "log4j2.properties"
_FORMAT_TIMEOUT_S = 120.0
_STOP_TIMEOUT_S = 30.0
_POLL_S = 0.25


def new_cluster_id() -> str:
    """A KRaft cluster id as Kafka's ``Uuid.randomUuid`` makes them: base64url, 22 chars."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):  # Kafka avoids ids a command line would take for a flag
            return text


class LocalBroker:
    """One Kafka broker+controller process whose files all live under ``state_dir``.

    Layout: ``server.properties`` (rendered from the template), ``data/`` (log.dirs),
    ``logs/`` (``server.log`` from log4j2, ``kafka.out`` for the JVM's own output),
    ``broker.pid`` and ``storage.json`` (the cluster id and the controller address the storage
    was formatted for).
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        port: int,
        controller_port: int,
        classpath: str,
        host: str = "127.0.0.1",
        heap: str = "512m",
        start_timeout_s: float = 90.0,
        extra_properties: Mapping[str, str] | None = None,
        template: Path = SERVER_TEMPLATE,
        log4j_config: Path = LOG4J_CONFIG,
        security: SecureBrokerFiles | None = None,
        node_id: int = 1,
        quorum_voters: str | None = None,
        cluster_id: str | None = None,
    ) -> None:
        if port == controller_port:
            msg = f"the Kafka broker and controller need two ports, both are {port}"
            raise LocalStackError(msg)
        self.state_dir = Path(state_dir).resolve()
        self.port = port
        self.controller_port = controller_port
        self.classpath = classpath
        self.host = host
        self.heap = heap
        self.start_timeout_s = start_timeout_s
        self.extra_properties = dict(extra_properties or {})
        self.template = template
        self.log4j_config = log4j_config
        self.security = security
        self.node_id = node_id
        self.quorum_voters = quorum_voters  # "1@host:port,2@host:port,...": a cluster's node
        self.cluster_id = cluster_id
        self.last_start_s: float | None = None
        self._launched_at: float | None = None

    # -- where things are -------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def server_log(self) -> Path:
        return self.logs_dir / "server.log"

    @property
    def console_log(self) -> Path:
        return self.logs_dir / "kafka.out"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "broker.pid"

    @property
    def config_file(self) -> Path:
        return self.state_dir / "server.properties"

    @property
    def storage_stamp(self) -> Path:
        return self.state_dir / "storage.json"

    @property
    def pid(self) -> int | None:
        process = processes.live_process(self.pid_file)
        return process.pid if process else None

    # -- life cycle ---------------------------------------------------------------------------

    def is_running(self) -> bool:
        """Whether the process of our pid file runs (it may still be starting)."""
        return processes.live_process(self.pid_file) is not None

    def is_answering(self, timeout_s: float = 5.0) -> bool:
        """Whether the broker answers a DescribeCluster request with itself (its node id)
        unfenced."""
        if not self._accepts_connections():
            return False
        from kafka.admin import KafkaAdminClient
        from kafka.errors import KafkaError

        timeout_ms = int(timeout_s * 1000)
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap_servers,
                client_id="lakecast-local-probe",
                request_timeout_ms=timeout_ms,
                bootstrap_timeout_ms=timeout_ms,
                **self.admin_security_options(),
            )
        except (KafkaError, OSError):
            return False
        try:
            brokers = admin.describe_cluster().get("brokers", [])
        except (KafkaError, OSError):
            return False
        finally:
            admin.close()
        return any(
            broker.get("broker_id") == self.node_id and not broker.get("is_fenced", False)
            for broker in brokers
        )

    def admin_security_options(self) -> dict[str, Any]:
        """kafka-python security options of the admin principal (none for a PLAINTEXT broker)."""
        if self.security is None:
            return {}
        return self.security.client_security(ADMIN_USER).client_options()

    def start(self) -> None:
        """Start the broker (formatting the storage on the first start) and wait until it answers.

        Harmless when our broker already runs: it only waits for it to answer.

        Raises:
            PortInUseError: the broker or controller port is taken by another process.
            EnvironmentSetupError: java or the Kafka jars are missing.
            LocalStackError: formatting failed, or the broker exited or did not answer within
                ``start_timeout_s``; the message holds the tail of its log.
        """
        self.launch()
        self.wait_until_answering()

    def launch(self) -> None:
        """Start the broker process (formatting the storage first) without waiting for it;
        nothing when it already runs. :meth:`wait_until_answering` waits."""
        self._launched_at = time.monotonic()
        self._check_storage_kind()
        if processes.live_process(self.pid_file) is not None:
            return
        require_free_ports(
            self.host, {"Kafka broker": self.port, "Kafka controller": self.controller_port}
        )
        java = self._java()
        if self.security is not None:
            private_dir(self.state_dir)  # its secrets: the owner's only
            self.security.ensure()
        self._write_config()
        self._format_storage(java)
        argv = [
            java,
            f"-Xmx{self.heap}",
            # -Xms = -Xmx, as Kafka's own start script: with -Xms64m G1 kept the young
            # generation small and paused for a young collection about every second.
            f"-Xms{self.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j_config}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            "-cp",
            self.classpath,
            "kafka.Kafka",
            str(self.config_file),
        ]
        process = processes.spawn_detached(argv, log=self.console_log, cwd=self.state_dir)
        processes.write_pid_file(self.pid_file, process)

    def wait_until_answering(self) -> None:
        """Wait until the launched broker answers, ``start_timeout_s`` after its launch.

        Raises:
            LocalStackError: it exited or did not answer in time (it is stopped then); the
                message holds the tail of its log.
        """
        began = self._launched_at if self._launched_at is not None else time.monotonic()
        process = processes.live_process(self.pid_file)
        if process is None:
            msg = f"the Kafka broker on {self.bootstrap_servers} is not running; last lines of "
            msg += f"its log:\n{self._log_tail()}"
            raise LocalStackError(msg)
        try:
            self._wait_until_answering(process, began)
        except LocalStackError:
            processes.terminate(process, timeout_s=5.0)
            self.pid_file.unlink(missing_ok=True)
            raise

    def stop(self, timeout_s: float = _STOP_TIMEOUT_S) -> None:
        """Shut the broker down cleanly (SIGTERM), killing it after ``timeout_s``; idempotent."""
        process = processes.read_pid_file(self.pid_file)
        if process is not None:
            processes.terminate(process, timeout_s=timeout_s)
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would; a later ``start`` recovers its logs."""
        process = processes.read_pid_file(self.pid_file)
        if process is not None:
            processes.terminate(process, timeout_s=_STOP_TIMEOUT_S, force=True)
        self.pid_file.unlink(missing_ok=True)

    # -- steps --------------------------------------------------------------------------------

    def _java(self) -> str:
        java = shutil.which("java")
        if java is None:
            msg = "`java` was not found on PATH: install a Java 17 JDK to run the local broker"
            raise EnvironmentSetupError(msg)
        jars = [Path(entry).name for entry in self.classpath.split(":") if entry]
        if not any(name.startswith("kafka_") for name in jars):
            msg = "the Kafka broker jar (kafka_2.13) is not on the classpath: run `lakecast jars`"
            raise EnvironmentSetupError(msg)
        return java

    def _write_config(self) -> None:
        # 0700, not the umask's: the data, the logs and a secured broker's secrets live here.
        private_dir(self.state_dir)
        private_dir(self.logs_dir)
        values = {
            "host": self.host,
            "port": str(self.port),
            "controller_port": str(self.controller_port),
            "data_dir": str(self.data_dir),
            "node_id": str(self.node_id),
            "quorum_voters": self.quorum_voters or "",
        }
        try:
            text = string.Template(self.template.read_text()).substitute(values)
        except (OSError, KeyError, ValueError) as exc:
            msg = f"could not render the broker config template {self.template}: {exc}"
            raise LocalStackError(msg) from exc
        properties = dict(self.extra_properties)
        if self.security is not None:
            secured = self.security.broker_properties(self.host, self.port, self.controller_port)
            properties = {**secured, **properties}
        # Later keys win in a properties file: these replace the template's listeners.
        extra = "".join(f"{key}={value}\n" for key, value in properties.items())
        # 0600: a secured broker's file holds its own SCRAM password (its JAAS line).
        write_private(self.config_file, text + ("\n# extra properties\n" + extra if extra else ""))

    def _check_storage_kind(self) -> None:
        """Refuse to start (or wait on) a secured storage as PLAINTEXT, or the reverse."""
        if not (self.data_dir / "meta.properties").is_file():
            return
        recorded = bool(_read_stamp(self.storage_stamp).get("secure", False))
        if recorded != (self.security is not None):
            kind = "a secured (SASL_SSL)" if recorded else "a PLAINTEXT"
            hint = "" if recorded else "out"
            msg = (
                f"the Kafka storage in {self.data_dir} was formatted for {kind} broker: "
                f"start it with{hint} --secure, or delete {self.state_dir} to start anew"
            )
            raise LocalStackError(msg)

    def _format_storage(self, java: str) -> None:
        stamp = self.storage_stamp
        controller = self.quorum_voters or f"{self.host}:{self.controller_port}"
        secure = self.security is not None
        if (self.data_dir / "meta.properties").is_file():
            recorded = _read_stamp(stamp)
            formatted_for = recorded.get("controller")
            if formatted_for not in (None, controller):
                msg = (
                    f"the Kafka storage in {self.data_dir} was formatted for controller "
                    f"{formatted_for}, not {controller}: use that port, or delete "
                    f"{self.state_dir} to start with an empty broker"
                )
                raise LocalStackError(msg)
            self._check_storage_kind()
            return
        cluster_id = self.cluster_id or new_cluster_id()
        # A static quorum (controller.quorum.voters) is formatted as it is; a single node
        # bootstraps its own dynamic quorum.
        mode = [] if self.quorum_voters else ["--standalone"]
        tool = ["kafka.tools.StorageTool", "format", *mode,
                "-t", cluster_id, "-c", str(self.config_file)]  # fmt: skip
        argfile = self.state_dir / "format.args"
        if self.security is not None:
            # The SCRAM passwords go in a java @argfile (0600, removed after), not on argv,
            # where any local user could read them in /proc while the tool runs.
            tool += self.security.format_arguments()
            write_private(argfile, "".join(_argfile_line(arg) for arg in tool))
            tool = [f"@{argfile}"]
        argv = [
            java, "-Xmx256m", f"-Dlog4j2.configurationFile={self.log4j_config}",
            f"-Dkafka.logs.dir={self.logs_dir}", "-cp", self.classpath, *tool,
        ]  # fmt: skip
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=_FORMAT_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            msg = f"formatting the Kafka storage in {self.data_dir} took over {exc.timeout:.0f} s"
            raise LocalStackError(msg) from exc
        finally:
            argfile.unlink(missing_ok=True)
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
            msg = (
                f"kafka StorageTool format failed for {self.data_dir} "
                f"(exit {result.returncode}):\n{output}"
            )
            raise LocalStackError(msg)
        record = {"cluster_id": cluster_id, "controller": controller, "secure": secure}
        write_private(stamp, json.dumps(record))

    def _accepts_connections(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0):
                return True
        except OSError:
            return False

    def _wait_until_answering(self, process: processes.TrackedProcess, began: float) -> None:
        deadline = began + self.start_timeout_s
        while True:
            if not process.is_alive():
                code = process.exit_code()
                status = f"exit status {code}" if code is not None else "it is gone"
                self.pid_file.unlink(missing_ok=True)
                msg = (
                    f"the Kafka broker (pid {process.pid}) on {self.bootstrap_servers} exited "
                    f"while starting ({status}); last lines of its log:\n{self._log_tail()}"
                )
                raise LocalStackError(msg)
            remaining = deadline - time.monotonic()
            if self.is_answering(timeout_s=max(1.0, min(5.0, remaining))):
                self.last_start_s = time.monotonic() - began
                return
            if time.monotonic() >= deadline:
                msg = (
                    f"the Kafka broker (pid {process.pid}) did not answer on "
                    f"{self.bootstrap_servers} within {self.start_timeout_s:.0f} s; "
                    f"last lines of its log:\n{self._log_tail()}"
                )
                raise LocalStackError(msg)
            time.sleep(_POLL_S)

    def _log_tail(self, lines: int = 20) -> str:
        parts = []
        for log in (self.server_log, self.console_log):
            if log.is_file() and log.stat().st_size > 0:
                parts.append(f"--- {log}\n{processes.tail(log, lines)}")
        return "\n".join(parts) or f"(nothing logged under {self.logs_dir})"

    def __repr__(self) -> str:
        return f"LocalBroker({self.bootstrap_servers}, state_dir={self.state_dir})"


def _read_stamp(stamp: Path) -> dict[str, Any]:
    """What was recorded when the storage was formatted (controller, secure), if recorded."""
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def formatted_secure(state_dir: Path) -> bool:
    """Whether the broker storage in ``state_dir`` was formatted for a secured broker."""
    return bool(_read_stamp(Path(state_dir) / "storage.json").get("secure", False))


def _argfile_line(argument: str) -> str:
    # A java @argfile: one argument a line, quoted, backslashes and quotes escaped.
    escaped = argument.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"{os.linesep}'
