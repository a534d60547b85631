"""Every line a worker serving the Keras model writes parses as JSON: TensorFlow's C++
start-up lines become JSON log records (native_stderr_as_logs) and Python warnings go through
the JSON logger. (A spark-submit job's lines: test_cli_errors' refused job.)"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from lakecast.local.stopping import stop_processes
from lakecast.registry import Registry
from lakecast.testing.clock import wait_for
from lakecast.testing.events import synthetic_payloads
from lakecast.testing.features import write_snapshot
from lakecast.testing.kafka import produce, read_committed
from lakecast.testing.models import register_with_holdout, write_features_table
from lakecast.testing.workers import (
    WORKER_STOP_S,
    create_run_topics,
    script_command,
    worker_env,
    worker_options,
)

EVENTS = 50
ROOT = Path(__file__).resolve().parents[2]


def test_a_keras_worker_writes_only_json_lines(bootstrap: str, tmp_path: Path) -> None:
    lake = {"registry": str(tmp_path / "registry"), "snapshot": str(tmp_path / "snapshot")}
    features = str(tmp_path / "features")
    write_features_table(features, rows=600, online=True)
    write_snapshot(lake["snapshot"])
    register_with_holdout(Registry(lake["registry"]), features, "keras", alias="champion")
    run = uuid.uuid4().hex[:8]
    topics = create_run_topics(bootstrap, run, 1)
    command = script_command(worker_options(lake, topics, f"logs-{run}", sample_interval_s=1))
    env = worker_env(bootstrap, 1)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # what the service sets itself, not the test
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: b" serving " in log.read_bytes(), timeout_s=180, what="the worker")
        produce(bootstrap, topics["events"], synthetic_payloads(EVENTS))
        predictions = read_committed(bootstrap, topics["predictions"], at_least=EVENTS)
        assert len(predictions) == EVENTS
        time.sleep(1.5)  # a metrics sample written and logged after the batch
    finally:
        stop_processes([process], WORKER_STOP_S)
    lines = log.read_text().splitlines()
    assert lines, "the worker wrote nothing"
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except ValueError:
            pytest.fail(f"line {number} of the worker's output is not JSON: {line!r}")
        assert isinstance(entry, dict)
        assert {"ts", "level", "logger", "message"} <= entry.keys()
