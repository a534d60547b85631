"""The monitor and the autoscaler, run as a user runs them, serve /metrics as `metrics:` says:
HTTPS with the configured certificate, 401 without the configured credentials, 200 with them.
"""

from __future__ import annotations

import base64
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from lakecast.local.ports import free_port
from lakecast.testing.tls import make_pki

LAKECAST = Path(sys.executable).with_name("lakecast")


def _get(url: str, context: ssl.SSLContext, auth: str | None) -> tuple[int, str]:
    request = urllib.request.Request(url)  # noqa: S310 (a URL this test built)
    if auth:
        request.add_header("Authorization", f"Basic {base64.b64encode(auth.encode()).decode()}")
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, ""


@pytest.mark.parametrize("service", ["monitor", "autoscaler"])
def test_a_service_serves_metrics_over_tls_behind_basic_auth(
    service: str,
    bootstrap: str,
    topic_factory: Callable[..., str],
    consumer_group: str,
    tmp_path: Path,
) -> None:
    pki = make_pki(tmp_path)
    password = tmp_path / "scrape.password"
    password.write_text("correct horse\n")
    password.chmod(0o600)
    metrics_topic = topic_factory("metrics")
    config = tmp_path / "lakecast.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "kafka": {"bootstrap_servers": bootstrap},
                "metrics": {
                    "tls_certfile": str(pki.cert),
                    "tls_keyfile": str(pki.key),
                    "basic_auth_username": "prometheus",
                    "basic_auth_password_file": str(password),
                },
            }
        )
    )
    port = free_port()
    extra = ["--no-act", "--input-topic", metrics_topic] if service == "autoscaler" else []
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKECAST__")}
    env["LAKECAST_CONFIG"] = str(config)
    process = subprocess.Popen(
        [str(LAKECAST), "stream", service, "--topic", metrics_topic, "--group", consumer_group,
         "--metrics-port", str(port), *extra],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"https://127.0.0.1:{port}/metrics"
    trusting = ssl.create_default_context(cafile=str(pki.cert))
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                status, _ = _get(url, trusting, None)
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, f"{service}: no endpoint on {url}"
                time.sleep(0.5)
        assert status == 401
        assert _get(url, trusting, "prometheus:wrong")[0] == 401
        status, body = _get(url, trusting, "prometheus:correct horse")
        assert status == 200
        assert "# HELP lakecast_metrics_records_total" in body
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
