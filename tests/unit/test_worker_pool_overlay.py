"""Workers the autoscaler's pool starts connect as the worker principal, not as the autoscaler.

Real child processes report the environment they were given; the overlays are the ones
``lakecast local up --secure`` writes, read back by the real config loader.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from lakecast.autoscaling.pool import WorkerPool
from lakecast.config import OVERLAY_ENV, load_settings
from lakecast.local.security import SecureBrokerFiles

REPORT_ENV = (
    "import json, os; "
    "print(json.dumps({k: v for k, v in os.environ.items() if k.startswith('LAKECAST')}))"
)


def _child_environment(pool: WorkerPool, logs: Path) -> dict[str, str]:
    worker_id = pool.start_one()
    deadline = time.monotonic() + 30
    while pool.live():
        assert time.monotonic() < deadline, "the child did not exit"
        time.sleep(0.05)
    reported: dict[str, str] = json.loads((logs / f"{worker_id}.log").read_text())
    return reported


@pytest.fixture
def autoscaler_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The autoscaler's own identity, from an overlay and from the environment."""
    monkeypatch.setenv(OVERLAY_ENV, "/secure/autoscaler.yaml")
    monkeypatch.setenv("LAKECAST__KAFKA__SECURITY__SASL_USERNAME", "autoscaler")
    monkeypatch.setenv("LAKECAST__KAFKA__SECURITY__SASL_PASSWORD_FILE", "/secure/autoscaler.pw")
    monkeypatch.setenv("LAKECAST__SERVING__MAX_BATCH", "7")


@pytest.mark.usefixtures("autoscaler_environment")
def test_pool_workers_get_their_overlay_and_not_the_autoscalers_identity(tmp_path: Path) -> None:
    pool = WorkerPool(
        [sys.executable, "-c", REPORT_ENV],
        log_dir=tmp_path,
        config_overlay="/secure/worker.yaml",
    )
    reported = _child_environment(pool, tmp_path)
    assert reported[OVERLAY_ENV] == "/secure/worker.yaml"
    assert not [key for key in reported if key.startswith("LAKECAST__KAFKA__SECURITY__")]
    assert reported["LAKECAST__SERVING__MAX_BATCH"] == "7"  # other settings pass on
    assert reported["LAKECAST_WORKER_ID"] == "worker-0"


@pytest.mark.usefixtures("autoscaler_environment")
def test_without_an_overlay_pool_workers_inherit_everything(tmp_path: Path) -> None:
    pool = WorkerPool([sys.executable, "-c", REPORT_ENV], log_dir=tmp_path)
    reported = _child_environment(pool, tmp_path)
    assert reported[OVERLAY_ENV] == "/secure/autoscaler.yaml"
    assert reported["LAKECAST__KAFKA__SECURITY__SASL_USERNAME"] == "autoscaler"


def test_the_secure_autoscaler_overlay_names_the_workers(tmp_path: Path) -> None:
    files = SecureBrokerFiles(tmp_path / "secure")
    overlays = files.write_overlays("127.0.0.1:19092")
    autoscaler = load_settings(environ={OVERLAY_ENV: str(overlays["autoscaler"])})
    assert autoscaler.kafka.security.sasl_username == "autoscaler"
    assert autoscaler.autoscaling.worker_config_overlay == str(overlays["worker"])
    worker = load_settings(environ={OVERLAY_ENV: autoscaler.autoscaling.worker_config_overlay})
    assert worker.kafka.security.sasl_username == "worker"
    assert worker.autoscaling.worker_config_overlay is None
    for user in ("worker", "monitor", "replay", "archive"):
        assert "autoscaling" not in overlays[user].read_text()
    assert load_settings(environ={}).autoscaling.worker_config_overlay is None
