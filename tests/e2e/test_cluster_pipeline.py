"""The whole batch pipeline on a two-worker standalone cluster gives the tables of ``local[2]``,
and survives a Spark worker killed under it.

One cluster for the module (``lakecast local up --spark-workers 2``, see cluster_fixtures);
on it, through ``./spark-submit.sh --master spark://...`` with ``lib/`` shipped as
``--py-files``: generate -> extract -> train -> score (``--read spark`` asking for a fake GPU
per executor, the default read, then ``--incremental``) -> ``archive_topics.py
--available-now``. The same steps run on the session's ``local[2]`` SparkSession through the
functions the jobs call. The runs are made once (module fixture) and compared by the tests:
features row for row, predictions to 1e-12, registry versions and sha256s, archives, and the
GPU placement each executor logged.

Spark's fault model rides on two of those runs: while ``extract_features`` and the
default-read ``score_batch`` run on the cluster, the worker whose executor first runs a Python
task (its JVM's pid read from the pid file ``local up`` wrote) is killed with SIGKILL, and
``local up`` starts it again afterwards. Its executor goes with it (an executor exits when its
worker's connection drops), and the driver runs the lost tasks again on the other worker. The
job must finish, or fail with Spark's error and then finish when rerun; either way its output
is counted key by key with delta-rs against local[2]'s tables (every expected key exactly
once) and compared with them like the other runs' (row for row, scores to 1e-12).
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from lakecast.local import processes
from lakecast.scoring.placement import PLACEMENT_EVENT
from lakecast.testing.batch_faults import KEYS, count_keys, read_keys
from tests.e2e.cluster_fixtures import JOB_TIMEOUT_S, LocalCluster, last_json, start_cluster

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# In make test (marker cluster: skip locally with -m 'not cluster'; make test-spark-cluster runs
# it alone). The module's fixture runs 7 applications through spark-submit, two of them with a
# worker killed under them: 438 s at load 3-8 on 2 cores (856 s at load 11-21), 635-703
# CPU-seconds in all. It replaces tests/e2e/test_submit_jobs.py (~190 s in CI runs).
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(2400)]

ROWS, DAYS, SEED, START = 3000, 3, 11, date(2026, 3, 2)
MODEL = "cluster"
CHAMPION = f"{MODEL}@champion"
ARCHIVED_PREDICTIONS = 40
_POLL_S = 0.1
_FAILURE_WORDS = ("ExecutorLostFailure", "Lost executor", "SparkException", "Job aborted")
PREDICTION_COLUMNS = ["event_id", "user_id", "ts", "model_name", "model_version"]


@dataclass
class Lake:
    """One run's tables under ``root`` and the jobs' summaries."""

    root: Path
    summaries: dict[str, dict[str, Any]]

    def table(self, name: str) -> str:
        return str(self.root / name)


@dataclass(frozen=True)
class KilledRun:
    """What happened to a job whose worker was killed under it."""

    killed_worker: str  # "worker-1" or "worker-2"
    killed_pid: int
    exit_code: int
    output: str
    reran: bool


@dataclass
class Runs:
    cluster: Lake
    local: Lake
    apps: dict[str, set[Path]]  # per cluster job: its application's folders on the workers
    killed: dict[str, KilledRun]  # the cluster jobs that ran with a worker killed under them

    def executor_logs(self, *jobs: str) -> list[Path]:
        """The executors' stderr files of these jobs' applications."""
        return sorted(log for job in jobs for app in self.apps[job] for log in app.glob("*/stderr"))


def _run_on_cluster(
    cluster: LocalCluster, lake: Lake, logs: Path, topics: dict[str, str]
) -> tuple[dict[str, set[Path]], dict[str, KilledRun]]:
    master, t = cluster.master_url, lake.table
    run = lake.summaries
    apps: dict[str, set[Path]] = {}
    killed: dict[str, KilledRun] = {}

    def job(name: str, *args: str, kill_a_worker: bool = False) -> dict[str, Any]:
        before = _app_dirs(cluster)
        if kill_a_worker:
            killed[name] = _run_killing_a_worker(cluster, list(args), logs / f"{name}.log")
            if not killed[name].reran:  # a rerun started the killed worker again already
                _restart_workers(cluster)
            summary = last_json(killed[name].output)
        else:
            summary = cluster.submit(master, *args, log=logs / f"{name}.log")
        apps[name] = _app_dirs(cluster) - before
        return summary

    job("generate", "jobs/generate_events.py", "--rows", str(ROWS), "--days", str(DAYS),
        "--seed", str(SEED), "--start-date", START.isoformat(), "--path", t("events"))  # fmt: skip
    # The fault runs are two of the pipeline's own rather than two more applications: a
    # worker is SIGKILLed under extract and under the default-read score, and their tables
    # must still equal local[2]'s.
    run["extract"] = job("extract", "jobs/extract_features.py", "--all",
                         "--events", t("events"), "--out", t("features"),
                         "--entity-features", t("entity_features"),
                         kill_a_worker=True)  # fmt: skip
    run["train"] = job("train", "jobs/train.py", "--features", t("features"),
                       "--registry", t("registry"), "--model", MODEL)  # fmt: skip
    score = ["jobs/score_batch.py", "--model", CHAMPION, "--features", t("features"),
             "--registry", t("registry")]  # fmt: skip
    # This run also asks for one (fake) GPU per executor and per task; the others ask none.
    run["score_spark"] = job("score_spark", "--conf", "spark.executor.resource.gpu.amount=1",
                             "--conf", "spark.task.resource.gpu.amount=1", *score,
                             "--read", "spark",
                             "--predictions", t("predictions_spark"))  # fmt: skip
    run["score_default"] = job("score_default", *score, "--predictions", t("predictions"),
                               kill_a_worker=True)  # fmt: skip
    run["score_incremental"] = job("score_incremental", *score, "--incremental",
                                   "--predictions", t("predictions"))  # fmt: skip
    run["archive"] = job("archive", "jobs/archive_topics.py", "--available-now",
                         "--bootstrap", cluster.bootstrap,
                         "--predictions-topic", topics["predictions"],
                         "--metrics-topic", topics["metrics"],
                         "--predictions-table", t("archive/predictions"),
                         "--metrics-table", t("archive/metrics"),
                         "--checkpoints", t("_checkpoints/archive"))  # fmt: skip
    return apps, killed


def _run_on_local(spark: SparkSession, lake: Lake) -> None:
    """The same steps on ``local[2]``: the functions each job's main() calls."""
    from lakecast.data.clickstream import ClickstreamRun, generate_events
    from lakecast.data.events_table import write_events
    from lakecast.features.extract import extract_features
    from lakecast.models.training_run import TrainingRequest, train_and_register
    from lakecast.scoring.run import ScoringRequest, score_batch

    t, run = lake.table, lake.summaries
    events = ClickstreamRun(ROWS, DAYS, SEED, START)
    write_events(generate_events(spark, ROWS, DAYS, SEED, START), t("events"), events)
    run["extract"] = extract_features(
        spark,
        events_path=t("events"),
        features_path=t("features"),
        entity_features_path=t("entity_features"),
        run_date=None,
    ).as_dict()
    run["train"] = train_and_register(
        spark, TrainingRequest(t("features"), t("registry"), model_name=MODEL)
    ).as_dict()

    def score(out: str, **options: Any) -> dict[str, Any]:
        request = ScoringRequest(CHAMPION, t("features"), t(out), t("registry"), **options)
        return score_batch(spark, request).as_dict()

    run["score_spark"] = score("predictions_spark", read="spark")
    run["score_default"] = score("predictions")
    run["score_incremental"] = score("predictions", incremental=True)


def _archive_on_local(
    spark: SparkSession, lake: Lake, bootstrap: str, topics: dict[str, str]
) -> None:
    from lakecast.lake.archive import ArchiveTarget, start_archive

    t = lake.table
    for kind in ("predictions", "metrics"):
        target = ArchiveTarget(
            kind, topics[kind], t(f"archive/{kind}"), t(f"_checkpoints/archive/{kind}")
        )
        start_archive(spark, bootstrap, target, available_now=True).awaitTermination()


def _fill_topics(bootstrap: str, predictions: str) -> dict[str, str]:
    """Two new topics on the cluster's broker: scored rows as the workers write them, and the
    samples, anomaly and scaling records of a short replay."""
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    from lakecast.kafka.serde import ModelRef, Prediction, encode_metric, encode_prediction
    from lakecast.testing.daily import metric_records

    suffix = uuid.uuid4().hex[:8]
    topics = {"predictions": f"predictions-{suffix}", "metrics": f"metrics-{suffix}"}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(name, 2, 1) for name in topics.values()], timeout_ms=30_000)
    admin.close()
    rows = DeltaTable(predictions).to_pyarrow_table(
        columns=[*PREDICTION_COLUMNS, "model_sha256", "score"]
    )
    rows = rows.sort_by("event_id").slice(0, ARCHIVED_PREDICTIONS).to_pylist()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for row in rows:
        model = ModelRef(row["model_name"], row["model_version"], row["model_sha256"])
        value = Prediction(row["event_id"], row["user_id"], row["ts"], row["score"], model,
                           "champion", None, 1.0, "1.x")  # fmt: skip
        producer.send(topics["predictions"], key=row["user_id"].encode(),
                      value=encode_prediction(value))  # fmt: skip
    at = datetime.combine(START, datetime.min.time(), tzinfo=UTC)
    for kind, source, ts, fields in metric_records(at):
        producer.send(topics["metrics"], key=source.encode(),
                      value=encode_metric(kind, source, ts, fields))  # fmt: skip
    producer.flush()
    producer.close()
    return topics


def _app_dirs(cluster: LocalCluster) -> set[Path]:
    return set(cluster.work_dir.glob("worker-*/app-*"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    started = start_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield started
    finally:
        started.cli("down", timeout_s=120)


@pytest.fixture(scope="module")
def runs(
    spark: SparkSession, cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> Runs:
    root = tmp_path_factory.mktemp("cluster-pipeline")
    logs = root / "logs"
    logs.mkdir()
    on_cluster, on_local = Lake(root / "on-cluster", {}), Lake(root / "on-local", {})
    _run_on_local(spark, on_local)
    # The topics hold scored rows, so they are filled once the local run has scored.
    topics = _fill_topics(cluster.bootstrap, on_local.table("predictions"))
    _archive_on_local(spark, on_local, cluster.bootstrap, topics)
    apps, killed = _run_on_cluster(cluster, on_cluster, logs, topics)
    return Runs(on_cluster, on_local, apps, killed)


def _sorted(path: str, keys: list[str], drop: tuple[str, ...] = ()) -> pa.Table:
    table = DeltaTable(path).to_pyarrow_table()
    table = table.drop_columns([name for name in drop if name in table.column_names])
    return table.sort_by([(key, "ascending") for key in keys])


def test_every_job_ran_on_the_cluster_s_two_workers(runs: Runs) -> None:
    # generate, extract, train, three score runs and the archive: one application each.
    assert len(runs.apps) == 7
    for job, folders in runs.apps.items():
        assert {folder.name for folder in folders}, f"{job} started no executor"
    logs = runs.executor_logs(*runs.apps)
    assert {log.parents[2].name for log in logs} == {"worker-1", "worker-2"}


def test_events_are_the_same_row_for_row(runs: Runs) -> None:
    # Generated by Spark SQL on the executors (seeded per partition): the same rows on both.
    events = _sorted(runs.cluster.table("events"), ["event_id"])
    assert events.num_rows == ROWS
    assert events.equals(_sorted(runs.local.table("events"), ["event_id"]))


def test_features_are_the_same_row_for_row(runs: Runs) -> None:
    cluster, local = runs.cluster, runs.local
    assert (
        cluster.summaries["extract"]["feature_rows"] == local.summaries["extract"]["feature_rows"]
    )
    features = _sorted(cluster.table("features"), ["event_id"])
    assert features.num_rows > 0
    assert features.equals(_sorted(local.table("features"), ["event_id"]))
    keys = ["snapshot_date", "entity_type", "entity_id"]
    entity = _sorted(cluster.table("entity_features"), keys)
    assert entity.num_rows > 0
    assert entity.equals(_sorted(local.table("entity_features"), keys))


def _versions(lake: Lake) -> list[tuple[str, str, str, dict[str, float]]]:
    from lakecast.registry import Registry

    found = Registry(lake.table("registry")).versions(MODEL)
    holdout = {v.version: {k: m for k, m in v.metrics.items() if k.startswith("holdout_")}
               for v in found}  # fmt: skip
    return sorted((v.version, v.flavor, v.sha256, holdout[v.version]) for v in found)


def test_the_registry_holds_the_same_versions_trained_alike(runs: Runs) -> None:
    from lakecast.registry import Registry

    on_cluster, on_local = _versions(runs.cluster), _versions(runs.local)
    assert [flavor for _, flavor, _, _ in on_cluster] == ["sklearn", "keras"]
    # Same versions, flavors and holdout metrics (AUC, log loss, Brier, ...), to the bit.
    assert [(v, f, m) for v, f, _, m in on_cluster] == [(v, f, m) for v, f, _, m in on_local]
    aliases = [
        Registry(lake.table("registry")).aliases(MODEL) for lake in (runs.cluster, runs.local)
    ]
    pointed = [{name: state.version for name, state in found.items()} for found in aliases]
    assert pointed[0] == pointed[1] == {"champion": "1.0.0", "challenger": "1.1.0"}


def test_the_registry_holds_the_same_sha256s(runs: Runs) -> None:
    # Artifacts are byte-reproducible (models/flavors/reproducible.py): the same rows
    # trained in another process on another master give the very same files.
    assert [sha for _, _, sha, _ in _versions(runs.cluster)] == [
        sha for _, _, sha, _ in _versions(runs.local)
    ]


@pytest.mark.parametrize("table", ["predictions_spark", "predictions"])
def test_predictions_equal_those_of_local_to_1e_12(runs: Runs, table: str) -> None:
    reference = _sorted(runs.local.table("predictions"), ["event_id"])
    scored = _sorted(runs.cluster.table(table), ["event_id"])
    features = DeltaTable(runs.cluster.table("features")).to_pyarrow_table(columns=["event_id"])
    assert scored.num_rows == features.num_rows == reference.num_rows
    for column in PREDICTION_COLUMNS:
        assert scored.column(column).equals(reference.column(column)), column
    # Each row names the artifact that scored it: its own registry's champion.
    champion = {sha for version, _, sha, _ in _versions(runs.cluster) if version == "1.0.0"}
    assert set(scored["model_sha256"].to_pylist()) == champion
    differences = [
        abs(a - b)
        for a, b in zip(scored["score"].to_pylist(), reference["score"].to_pylist(), strict=True)
    ]
    assert all(math.isfinite(d) for d in differences)
    assert max(differences) <= 1e-12


def test_the_reads_and_the_incremental_run_behave_as_on_local(runs: Runs) -> None:
    for lake in (runs.cluster, runs.local):
        summaries = lake.summaries
        assert summaries["score_spark"]["read"] == "spark"
        assert summaries["score_default"]["read"] == "direct", summaries["score_default"]
        assert summaries["score_default"]["rows_scored"] == summaries["extract"]["feature_rows"]
        # Nothing changed in the features table since the default run recorded its version.
        incremental = summaries["score_incremental"]
        assert (incremental["incremental"], incremental["rows_scored"]) == (True, 0)
        assert (
            incremental["since_features_version"]
            == (summaries["score_default"]["features_table_version"])
        )


def test_the_archives_are_the_same(runs: Runs) -> None:
    summary = runs.cluster.summaries["archive"]
    archived = summary["archived_rows"]
    assert archived["predictions"] == ARCHIVED_PREDICTIONS
    # The configured served_features topic was never written on this broker: skipped, said.
    assert summary["missing_topics"] == {"served_features": "served_features"}
    assert "served_features" not in archived
    keys = ["kafka_partition", "kafka_offset"]
    for kind in ("predictions", "metrics"):
        on_cluster = _sorted(runs.cluster.table(f"archive/{kind}"), keys)
        assert on_cluster.num_rows == archived[kind] > 0
        assert on_cluster.equals(_sorted(runs.local.table(f"archive/{kind}"), keys)), kind


def _placements(logs: list[Path]) -> list[dict[str, Any]]:
    found = []
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            if PLACEMENT_EVENT in line and line.startswith("{"):
                record = json.loads(line)
                record["log"] = str(log)
                found.append(record)
    return found


def test_a_task_reads_its_gpu_address_and_falls_back_to_the_cpu_where_it_holds_none(
    runs: Runs,
) -> None:
    # Each executor of the --read spark run had the one fake address "0"; no GPU driver here.
    logs = runs.executor_logs("score_spark")
    placements = _placements(logs)
    assert placements, f"no {PLACEMENT_EVENT} line in {logs}"
    for placement in placements:
        assert placement["assigned"] == ["0"], placement
        assert placement["device"] == "cpu", placement
        assert placement["reason"].startswith("assigned GPU address '0' holds no GPU"), placement
    # Without the resource request the same scorer was assigned nothing.
    others = _placements(runs.executor_logs("score_default"))
    assert others
    assert {(p["device"], tuple(p["assigned"])) for p in others} == {("cpu", ())}


# ---- a Spark worker SIGKILLed under a job ---------------------------------------------------


def _worker_pids(cluster: LocalCluster) -> dict[str, int]:
    """Each worker's JVM pid, as lakecast's own pid files record it."""
    pids = {}
    for pid_file in sorted(cluster.spark_state.glob("worker-*.pid")):
        process = processes.live_process(pid_file)
        if process is not None:
            pids[pid_file.stem] = process.pid
    return pids


def _runs_python_task(worker_pid: int) -> bool:
    """Whether an executor under this worker has started a Python worker (a task is on it)."""
    try:
        tree = psutil.Process(worker_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return False
    for child in tree:
        try:
            command = " ".join(child.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        # Not "pyspark" alone: the executor JVM's classpath names pyspark's jars folder.
        if "pyspark.daemon" in command or "pyspark.worker" in command:
            return True
    return False


def _run_killing_a_worker(cluster: LocalCluster, args: list[str], log: Path) -> KilledRun:
    """Submit ``args``, SIGKILL the first worker whose executor runs a Python task, wait for
    the job; rerun it once (the worker started again) if it failed."""
    workers = _worker_pids(cluster)
    assert len(workers) == 2, workers
    job = cluster.start_submit(cluster.master_url, *args, log=log)
    killed: tuple[str, int] | None = None
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while killed is None and job.poll() is None and time.monotonic() < deadline:
        for name, pid in workers.items():
            if _runs_python_task(pid):
                os.kill(pid, signal.SIGKILL)
                killed = (name, pid)
                break
        time.sleep(_POLL_S)
    code = job.wait(timeout=max(1.0, deadline - time.monotonic()))
    output = log.read_text()
    assert killed is not None, f"the job ended before a worker ran a Python task:\n{output[-3000:]}"
    assert not psutil.pid_exists(killed[1]) or psutil.Process(killed[1]).status() == "zombie"
    reran = False
    if code != 0:
        # A failed run must say why in Spark's words (the lost executor, the aborted job).
        assert any(word in output for word in _FAILURE_WORDS), output[-3000:]
        _restart_workers(cluster)
        rerun_log = log.with_suffix(".rerun.log")
        cluster.submit(cluster.master_url, *args, log=rerun_log)
        output += rerun_log.read_text()
        reran = True
    lost = sum("Lost executor" in line or "ExecutorLost" in line for line in output.splitlines())
    # Shown with pytest -s: what the kill did to this run.
    print(f"{args[0]}: SIGKILL {killed[0]} (pid {killed[1]}); exit {code}; rerun {reran}; "
          f"{lost} driver log line(s) about the lost executor")  # fmt: skip
    return KilledRun(killed[0], killed[1], code, output, reran)


def _restart_workers(cluster: LocalCluster) -> None:
    up = cluster.cli("up", "--spark-workers", "2")
    assert "2 alive" in up.stdout, up.stdout


def test_score_batch_on_the_cluster_survives_a_worker_sigkill(runs: Runs) -> None:
    from lakecast.registry import Registry

    run = runs.killed["score_default"]
    champion = Registry(runs.cluster.table("registry")).resolve(CHAMPION)
    # Expected from local[2]'s features: the run that lost a worker owes every one of them.
    expected = {
        (event_id, champion.name, champion.version)
        for (event_id,) in read_keys(runs.local.table("features"), KEYS["features"])
    }
    found = read_keys(runs.cluster.table("predictions"), KEYS["predictions"])
    counted = count_keys("predictions", found, expected)
    assert (counted.lost, counted.duplicated, counted.unexpected) == (0, 0, 0), (counted, run)
    assert counted.rows == counted.expected == len(expected) > 0
    assert last_json(run.output)["rows_scored"] == len(expected)


def test_extract_features_on_the_cluster_survives_a_worker_sigkill(runs: Runs) -> None:
    run = runs.killed["extract"]
    for name in ("features", "entity_features"):
        keys = KEYS[name]
        reference = set(read_keys(runs.local.table(name), keys))
        counted = count_keys(name, read_keys(runs.cluster.table(name), keys), reference)
        assert (counted.lost, counted.duplicated, counted.unexpected) == (0, 0, 0), (counted, run)
        assert counted.rows == counted.expected > 0
