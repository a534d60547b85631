"""`streaming/monitor.py` and `streaming/autoscaler.py` as real processes: JSON logs, bad
records skipped, a clean exit on SIGTERM (the autoscaler's workers stopped with it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

ROOT = Path(__file__).resolve().parents[2]
SLEEPER = f"{sys.executable} -c 'import time; time.sleep(600)'"


class Service:
    """A service process whose stderr JSON lines are collected as they come."""

    def __init__(self, script: str, args: list[str], bootstrap: str) -> None:
        env = {**os.environ, "LAKECAST__KAFKA__BOOTSTRAP_SERVERS": bootstrap}
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "streaming" / script), *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.raw.append(line)
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                continue

    def wait_for_log(self, test: Callable[[dict[str, Any]], bool], timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(test(line) for line in list(self.lines)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("log line never came; stderr:\n" + "".join(self.raw[-30:]))
            time.sleep(0.1)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self._reader.join(timeout=10)
        return code


def test_services_log_json_skip_bad_records_and_stop_on_sigterm(
    bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    metrics = topic_factory("metrics")
    common = ["--topic", metrics, "--from-beginning", "--metrics-port", "0"]
    monitor = Service("monitor.py", [*common, "--group", f"m-{metrics}"], bootstrap)
    autoscaler = Service(
        "autoscaler.py",
        [
            *common,
            "--group",
            f"a-{metrics}",
            "--sample-lag",
            "--worker-command",
            SLEEPER,
            "--stop-timeout",
            "2",
        ],
        bootstrap,
    )
    try:
        autoscaler.wait_for_log(lambda line: line["message"].startswith("started worker"))
        for service in (monitor, autoscaler):
            service.wait_for_log(lambda line: " started on " in line["message"])
        producer = KafkaProducer(bootstrap_servers=bootstrap)
        producer.send(metrics, value=b"definitely not json")
        producer.flush(timeout=30)
        producer.close()
        for service in (monitor, autoscaler):
            service.wait_for_log(lambda line: line.get("offset") == 0 and line["level"] == "error")
    finally:
        codes = [service.terminate() for service in (monitor, autoscaler)]
    assert codes == [0, 0]
    for service, name in ((monitor, "monitor"), (autoscaler, "autoscaler")):
        bad = next(line for line in service.lines if line.get("offset") == 0)
        assert bad["service"] == name
        assert bad["topic"] == metrics
        assert "not valid UTF-8 JSON" in bad["message"]
        assert any(line["message"] == f"{name} stopped" for line in service.lines)
    started = [
        line["pid"] for line in autoscaler.lines if "pid" in line and "started" in line["message"]
    ]
    stopped = [line for line in autoscaler.lines if line["message"].startswith("stopped worker")]
    assert len(started) == 1
    assert len(stopped) == 1
    try:
        os.kill(started[0], 0)
    except ProcessLookupError:
        pass
    else:
        raise AssertionError(f"worker pid {started[0]} outlived the autoscaler")
