"""The Airflow DAG of deploy/airflow, loaded and run by real Apache Airflow (``make airflow-test``).

Airflow's pins clash with ours, so it lives in its own venv (``.venv-airflow``, made by the make
target); these tests drive it through its interpreter and CLI with a private ``AIRFLOW_HOME``
(SQLite). ``make test`` leaves them out (marker ``airflow``): the end-to-end run starts four
Spark sessions, one per task, minutes on this machine.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import date
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_BIN = ROOT / ".venv-airflow" / "bin"
DAG_ID = "lakecast_daily"
RUN_DATE = date(2026, 1, 2)

pytestmark = pytest.mark.airflow

_LOAD_DAG = """
import json, os
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
dag = bag.dags.get("lakecast_daily")
print(json.dumps({
    "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
    "tasks": [t.task_id for t in dag.tasks] if dag else [],
    "downstream": {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks} if dag else {},
    "catchup": dag.catchup if dag else None,
    "schedule": dag.timetable.summary if dag else None,
    "max_active_runs": dag.max_active_runs if dag else None,
    "start_date": dag.start_date.isoformat() if dag else None,
    "commands": {t.task_id: t.bash_command for t in dag.tasks} if dag else {},
}))
"""


def _airflow_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    if not (AIRFLOW_BIN / "airflow").exists():
        pytest.fail("Airflow is not installed in .venv-airflow: run `make airflow-test`")
    home.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "deploy" / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "LAKECAST_HOME": str(ROOT),
        **(extra or {}),
    }


def _run(command: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_the_dag_loads_with_its_steps_in_order_daily_with_catchup(tmp_path: Path) -> None:
    env = _airflow_env(tmp_path / "airflow")
    done = _run([str(AIRFLOW_BIN / "python"), "-c", _LOAD_DAG], env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    dag = json.loads(done.stdout.strip().splitlines()[-1])
    assert dag["import_errors"] == {}
    assert dag["tasks"] == ["extract", "score", "archive", "report", "quality", "drift"]
    assert dag["downstream"] == {
        "extract": ["score"],
        "score": ["archive"],
        "archive": ["report"],
        "report": ["quality"],
        "quality": ["drift"],
        "drift": [],
    }
    assert dag["catchup"] is True
    assert dag["schedule"] == "0 0 * * *"  # a day's run starts once the day is over
    assert dag["max_active_runs"] == 1  # a backfill runs its dates in order
    assert dag["commands"]["score"].endswith("lakecast run daily --date {{ ds }} --step score")


def test_airflow_dags_test_runs_one_date_end_to_end(
    spark: Any, kafka_broker: Any, tmp_path: Path
) -> None:
    from deltalake import DeltaTable

    from lakecast.schedule.ledger import finished_steps
    from lakecast.schedule.tables import ScheduleTables
    from lakecast.testing.daily import small_lake

    lake = small_lake(spark, tmp_path / "lake", kafka_broker.bootstrap_servers)
    env = _airflow_env(
        tmp_path / "airflow", {**lake.environment(), "LAKECAST__SPARK__MASTER": "local[2]"}
    )
    migrated = _run([str(AIRFLOW_BIN / "airflow"), "db", "migrate"], env, timeout=300)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    ran = _run(
        [str(AIRFLOW_BIN / "airflow"), "dags", "test", DAG_ID, RUN_DATE.isoformat()],
        env,
        timeout=1500,
    )
    output = ran.stdout + ran.stderr
    assert ran.returncode == 0, output[-5000:]

    steps = finished_steps(ScheduleTables(str(lake.root / "_schedule")), "daily", RUN_DATE)
    assert sorted(steps) == ["archive", "drift", "extract", "quality", "report", "score"]
    assert steps["extract"].summary["run_dates"] == [RUN_DATE.isoformat()]
    features = DeltaTable(str(lake.root / "features")).to_pandas()
    assert set(features["date"].astype(str)) == {RUN_DATE.isoformat()}
    predictions = DeltaTable(str(lake.root / "predictions")).to_pandas()
    assert len(predictions) == len(features) == steps["score"].summary["rows_scored"]
    assert steps["archive"].summary["archived_rows"]["predictions"] > 0
    report = DeltaTable(str(lake.root / "reports" / "daily_quality")).to_pandas()
    assert int(report["rows"].sum()) == len(predictions)
