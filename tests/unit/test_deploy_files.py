"""The scheduling files under deploy/: each calls ``lakecast run daily`` as documented and
passes the checker its platform has (systemd-analyze verify, the Kubernetes schema).

The Airflow DAG is loaded and run by real Airflow in tests/e2e/test_airflow_dag.py
(``make airflow-test``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBERNETES_VERSION = "1.32"  # the oldest line still supported upstream when this was written


def test_the_crontab_line_runs_yesterday_with_cron_escapes() -> None:
    lines = [
        line
        for line in (DEPLOY / "cron" / "lakecast.crontab").read_text().splitlines()
        if line.strip() and not line.startswith("#") and "=" not in line.split()[0]
    ]
    assert len(lines) == 1
    fields = lines[0].split(maxsplit=5)
    assert fields[:5] == ["30", "2", "*", "*", "*"]
    command = fields[5]
    assert "lakecast run daily --date" in command
    unescaped = [i for i, ch in enumerate(command) if ch == "%" and command[i - 1] != "\\"]
    assert unescaped == [], "cron ends the command at an unescaped %"
    # What cron hands to the shell (escapes removed) prints yesterday's date.
    date_expression = command[command.index("$(") + 2 : command.index(")")].replace("\\%", "%")
    printed = subprocess.run(
        ["/bin/bash", "-c", date_expression], capture_output=True, text=True, check=True
    ).stdout.strip()
    expected = subprocess.run(
        ["/bin/bash", "-c", "date -u -d '1 day ago' +%F"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert printed == expected


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_the_systemd_units_verify_cleanly() -> None:
    units = [str(DEPLOY / "systemd" / name) for name in ("lakecast-daily.service",
                                                          "lakecast-daily.timer")]  # fmt: skip
    done = subprocess.run(
        ["systemd-analyze", "verify", *units],
        capture_output=True,
        text=True,
        check=False,
    )
    # verify exits 0 on many problems and only warns (an unknown Type= is "ignoring"): any
    # output about our units is a defect.
    assert done.returncode == 0, done.stderr
    ours = [line for line in done.stderr.splitlines() if "lakecast-daily" in line]
    assert ours == []
    service = (DEPLOY / "systemd" / "lakecast-daily.service").read_text()
    assert "lakecast run daily --date" in service and "%%F" in service


def test_the_cronjob_manifest_matches_the_kubernetes_schema() -> None:
    import kubernetes_validate

    documents = list(
        yaml.safe_load_all((DEPLOY / "kubernetes" / "lakecast-daily-cronjob.yaml").read_text())
    )
    assert [doc["kind"] for doc in documents] == ["CronJob", "ConfigMap"]
    for doc in documents:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    cronjob = documents[0]["spec"]
    assert cronjob["concurrencyPolicy"] == "Forbid"
    container = cronjob["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert "lakecast run daily --date" in container["args"][0]
    bad = {**documents[0], "spec": {**cronjob, "concurrencyPolicy": 3}}
    with pytest.raises(kubernetes_validate.ValidationError):  # the check can fail
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)
