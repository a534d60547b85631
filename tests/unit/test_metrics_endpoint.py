"""The services' /metrics endpoint scraped for real: loopback by default, TLS with a
self-signed certificate made here, basic auth (401 without credentials), client certificates.
"""

from __future__ import annotations

import base64
import re
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from lakecast.config import MetricsEndpointSettings, load_settings
from lakecast.errors import ConfigError
from lakecast.local.ports import free_port
from lakecast.monitoring.endpoint import MetricsEndpoint, serve_metrics
from lakecast.testing.tls import Pki, make_pki

LIB = Path(__file__).resolve().parents[2] / "lib" / "lakecast"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("lakecast_test_scrapes", "A counter only this test's registry has.", registry=registry)
    return registry


@pytest.fixture
def endpoints() -> Iterator[list[MetricsEndpoint]]:
    started: list[MetricsEndpoint] = []
    yield started
    for endpoint in started:
        endpoint.stop()


def _start(
    settings: MetricsEndpointSettings,
    registry: CollectorRegistry,
    endpoints: list[MetricsEndpoint],
) -> MetricsEndpoint:
    endpoint = serve_metrics(free_port(), settings, registry=registry)
    assert endpoint is not None
    endpoints.append(endpoint)
    return endpoint


def _scrape(
    url: str, *, context: ssl.SSLContext | None = None, auth: tuple[str, str] | None = None
) -> tuple[int, str, dict[str, str]]:
    request = urllib.request.Request(url)  # noqa: S310 (a URL this test built)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode(), dict(refused.headers)


def _trusting(pki: Pki, *, client: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.cert))
    if client:
        context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    return context


def test_by_default_the_endpoint_is_plain_http_on_loopback_only(
    registry: CollectorRegistry, endpoints: list[MetricsEndpoint]
) -> None:
    endpoint = _start(MetricsEndpointSettings(), registry, endpoints)
    assert endpoint.server.server_address[0] == "127.0.0.1"
    assert endpoint.url.startswith("http://127.0.0.1:")
    status, body, _ = _scrape(endpoint.url)
    assert status == 200
    assert "lakecast_test_scrapes_total 0.0" in body
    assert serve_metrics(0, MetricsEndpointSettings(), registry=registry) is None


def test_tls_with_a_self_signed_certificate_and_basic_auth(
    pki: Pki, tmp_path: Path, registry: CollectorRegistry, endpoints: list[MetricsEndpoint]
) -> None:
    password_file = tmp_path / "metrics.password"
    password_file.write_text("s3cret-scrape\n")
    settings = MetricsEndpointSettings(
        tls_certfile=str(pki.cert),
        tls_keyfile=str(pki.key),
        basic_auth_username="prometheus",
        basic_auth_password_file=str(password_file),
    )
    endpoint = _start(settings, registry, endpoints)
    assert endpoint.url.startswith("https://127.0.0.1:")
    trusting = _trusting(pki)

    status, body, headers = _scrape(endpoint.url, context=trusting)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith('Basic realm="lakecast metrics"')
    assert "lakecast_test_scrapes" not in body
    for wrong in [("prometheus", "s3cret"), ("root", "s3cret-scrape"), ("prometheus", "")]:
        assert _scrape(endpoint.url, context=trusting, auth=wrong)[0] == 401, wrong

    status, body, _ = _scrape(endpoint.url, context=trusting, auth=("prometheus", "s3cret-scrape"))
    assert status == 200
    assert "lakecast_test_scrapes_total 0.0" in body

    # A client that does not trust the certificate refuses it; plain HTTP gets no metrics.
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        _scrape(endpoint.url, context=ssl.create_default_context())
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        _scrape(endpoint.url.replace("https://", "http://"))


def test_a_client_ca_requires_a_client_certificate(
    pki: Pki, registry: CollectorRegistry, endpoints: list[MetricsEndpoint]
) -> None:
    settings = MetricsEndpointSettings(
        tls_certfile=str(pki.cert), tls_keyfile=str(pki.key), tls_client_cafile=str(pki.client_ca)
    )
    endpoint = _start(settings, registry, endpoints)
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
        _scrape(endpoint.url, context=_trusting(pki))
    status, body, _ = _scrape(endpoint.url, context=_trusting(pki, client=True))
    assert status == 200
    assert "lakecast_test_scrapes_total" in body


def test_unreadable_secrets_and_half_pairs_are_config_errors(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    missing = MetricsEndpointSettings(
        basic_auth_username="prometheus", basic_auth_password_file=str(tmp_path / "nope")
    )
    with pytest.raises(ConfigError, match=r"basic_auth_password_file .*nope"):
        serve_metrics(free_port(), missing, registry=registry)
    config = tmp_path / "lakecast.yaml"
    config.write_text("metrics:\n  host: 0.0.0.0\n  tls_certfile: /etc/cert.pem\n")
    with pytest.raises(ConfigError, match="tls_certfile and tls_keyfile go together"):
        load_settings(config, environ={})
    config.write_text("metrics:\n  basic_auth_username: prometheus\n")
    with pytest.raises(ConfigError, match="basic_auth_password_file go together"):
        load_settings(config, environ={})


def test_every_service_serves_metrics_through_the_one_endpoint() -> None:
    # prometheus_client's own server binds 0.0.0.0 by default and has no auth: no module of
    # lakecast may start it directly, so the worker, monitor and autoscaler share this one.
    direct = [
        str(path.relative_to(LIB))
        for path in LIB.rglob("*.py")
        if re.search(r"\b(start_http_server|start_wsgi_server)\b\s*[(,]", path.read_text())
    ]
    assert direct == []
