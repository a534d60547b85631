"""The jobs as a user runs them: ``./spark-submit.sh`` on local[2] and on a local standalone
cluster with two workers, then extract, train and score through spark-submit.

Tables are read back with delta-rs, so this test process starts no JVM of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from lakecast.local.ports import free_port
from lakecast.local.spark_cluster import SparkStandaloneCluster

ROOT = Path(__file__).resolve().parents[2]
SUBMIT = ROOT / "spark-submit.sh"
EVENTS_ARGS = ["--rows", "3000", "--days", "3", "--seed", "9", "--start-date", "2026-03-02"]
SMALL_SPARK = ["--conf", "spark.sql.shuffle.partitions=2", "--conf", "spark.ui.enabled=false"]


def submit(
    *args: str, timeout_s: float = 420, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``./spark-submit.sh ARGS``; fail the test with the tail of its output if it fails."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKECAST__")}
    env.update(env_extra or {})
    done = subprocess.run(
        [str(SUBMIT), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"spark-submit {args} exited {done.returncode}:\n{done.stderr[-4000:]}")
    return done


def last_json(output: str) -> dict[str, Any]:
    """The job's JSON summary: the last stdout line that parses as a JSON object."""
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            parsed: dict[str, Any] = json.loads(line)
            return parsed
    raise AssertionError(f"no JSON summary in the job's output:\n{output[-2000:]}")


def read_sorted(path: Path, columns: list[str]) -> pa.Table:
    table = DeltaTable(str(path)).to_pyarrow_table(columns=columns)
    return table.sort_by([("event_id", "ascending")])


@pytest.fixture(scope="module")
def local_events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("local") / "events"
    submit("--master", "local[2]", *SMALL_SPARK, "jobs/generate_events.py", *EVENTS_ARGS,
           "--path", str(path))  # fmt: skip
    return path


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SparkStandaloneCluster]:
    stack = SparkStandaloneCluster(
        state_dir=tmp_path / "spark",
        master_port=free_port(),
        ui_port=free_port(),
        worker_cores=1,
        worker_memory="1g",
    )
    try:
        stack.start(workers=2)
        yield stack
    finally:
        stack.stop()


def test_generator_on_local_and_on_a_standalone_cluster_gives_the_same_rows(
    local_events: Path, cluster: SparkStandaloneCluster, tmp_path: Path
) -> None:
    path = tmp_path / "events"
    # The cluster authenticates: spark-submit.sh gives the driver its secret (never in argv).
    secret = {"LAKECAST_SPARK_SECRET_FILE": str(cluster.secret_file)}
    submit("--master", cluster.master_url, "--conf", "spark.executor.memory=768m", *SMALL_SPARK,
           "jobs/generate_events.py", *EVENTS_ARGS, "--path", str(path),
           env_extra=secret)  # fmt: skip
    state = cluster.master_state() or {}
    finished = state.get("completedapps", []) + state.get("activeapps", [])
    assert any(app.get("name") == "lakecast-generate-events" for app in finished)
    columns = ["event_id", "user_id", "event_type", "price", "ts", "date"]
    on_cluster, on_local = read_sorted(path, columns), read_sorted(local_events, columns)
    assert on_cluster.num_rows == 3000
    assert on_cluster.equals(on_local)


def test_extract_train_and_score_through_spark_submit(local_events: Path, tmp_path: Path) -> None:
    features, registry, predictions = (tmp_path / n for n in ("features", "registry", "preds"))
    local = ["--master", "local[2]", *SMALL_SPARK]
    submit(*local, "jobs/extract_features.py", "--all", "--events", str(local_events),
           "--out", str(features), "--entity-features", str(tmp_path / "entity"))  # fmt: skip
    train = ["jobs/train.py", "--features", str(features), "--registry", str(registry)]
    trained = last_json(submit(*local, *train, "--model", "e2e").stdout)
    versions = {v["alias"]: v for v in trained["versions"]}
    assert versions["champion"]["flavor"] == "sklearn"
    assert versions["challenger"]["flavor"] == "keras"
    score = [*local, "jobs/score_batch.py", "--features", str(features), "--registry",
             str(registry), "--predictions", str(predictions)]  # fmt: skip
    first = last_json(submit(*score, "--model", "e2e@champion", "--incremental").stdout)
    feature_rows = DeltaTable(str(features)).to_pyarrow_table(columns=["event_id"]).num_rows
    assert first["rows_scored"] == feature_rows
    assert first["model_version"] == versions["champion"]["version"]
    again = last_json(submit(*score, "--model", "e2e@champion", "--incremental").stdout)
    assert again["rows_scored"] == 0
    written = DeltaTable(str(predictions)).to_pyarrow_table(columns=["event_id", "model_version"])
    assert written.num_rows == feature_rows
    refused = subprocess.run(
        [str(SUBMIT), *score, "--model", "e2e@nosuchalias"],
        cwd=ROOT, capture_output=True, text=True, timeout=420, check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    # spark-submit merges the Python driver's stderr into its stdout.
    assert "has no alias 'nosuchalias'" in refused.stdout + refused.stderr
