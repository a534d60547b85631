"""The Prometheus ``/metrics`` endpoint every service serves, as ``metrics:`` in config says.

prometheus-client's ``start_http_server`` binds 0.0.0.0 by default and (as of 0.26) has TLS but
no authentication on its server, only on its push client. So the endpoint is its WSGI app in
its threading WSGI server, wrapped by a small basic-auth check when a username is configured
(the password read from a file once at start, compared with ``hmac.compare_digest``), the
socket wrapped in TLS when a certificate is configured, on 127.0.0.1 unless configured.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from lakecast.config import MetricsEndpointSettings
from lakecast.config.base import read_secret_file
from lakecast.errors import ConfigError

log = logging.getLogger(__name__)

_REALM = "lakecast metrics"
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: services write JSON lines only."""

    def log_message(self, format: str, *args: Any) -> None:
        return


def basic_auth(app: WsgiApp, username: str, password: bytes) -> WsgiApp:
    """``app`` behind HTTP basic auth: 401 with a challenge unless the credentials match."""
    expected_user = username.encode()

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if _authorized(environ.get("HTTP_AUTHORIZATION", ""), expected_user, password):
            return app(environ, start_response)
        start_response(
            "401 Unauthorized",
            [
                ("WWW-Authenticate", f'Basic realm="{_REALM}", charset="UTF-8"'),
                ("Content-Type", "text/plain; charset=utf-8"),
            ],
        )
        return [b"credentials required\n"]

    return guarded


def _authorized(header: str, user: bytes, password: bytes) -> bool:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given_user, colon, given_password = base64.b64decode(encoded, validate=True).partition(b":")
    except (binascii.Error, ValueError):
        return False
    # Both compared, always, in constant time: no early exit tells which one was wrong.
    user_ok = hmac.compare_digest(given_user, user)
    password_ok = hmac.compare_digest(given_password, password)
    return bool(colon) and user_ok and password_ok


def tls_context(settings: MetricsEndpointSettings) -> ssl.SSLContext:
    """The server's TLS context (TLS 1.2 at least), requiring client certificates if a CA is set."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(settings.tls_certfile), str(settings.tls_keyfile))
        if settings.tls_client_cafile:
            context.load_verify_locations(cafile=settings.tls_client_cafile)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        msg = (
            f"metrics TLS: cannot load certificate {settings.tls_certfile}, key "
            f"{settings.tls_keyfile} or client CA {settings.tls_client_cafile}: {exc}"
        )
        raise ConfigError(msg) from exc
    return context


@dataclass
class MetricsEndpoint:
    """A running endpoint; ``url`` is where to scrape it, ``stop`` closes it."""

    server: WSGIServer
    thread: threading.Thread
    url: str

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(
    port: int | None,
    settings: MetricsEndpointSettings,
    *,
    registry: CollectorRegistry = REGISTRY,
) -> MetricsEndpoint | None:
    """Serve ``/metrics`` of ``registry`` on ``settings.host:port``; None or 0 means no endpoint.

    Raises:
        ConfigError: the certificate, key, client CA or password file cannot be read.
    """
    if not port:
        return None
    app: WsgiApp = make_wsgi_app(registry)
    if settings.basic_auth_username and settings.basic_auth_password_file:
        password = read_secret_file(
            settings.basic_auth_password_file, "metrics.basic_auth_password_file"
        ).encode()
        app = basic_auth(app, settings.basic_auth_username, password)
    context = tls_context(settings) if settings.tls_certfile else None

    family = socket.getaddrinfo(settings.host, port, type=socket.SOCK_STREAM)[0][0]

    class Server(ThreadingWSGIServer):
        address_family = family

    server = make_server(settings.host, port, app, Server, handler_class=_QuietHandler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, name="metrics-endpoint", daemon=True)
    thread.start()
    scheme = "https" if context else "http"
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"{scheme}://{host}:{server.server_port}/metrics"
    log.info(
        "prometheus metrics on %s",
        url,
        extra={"port": port, "auth": bool(settings.basic_auth_username)},
    )
    return MetricsEndpoint(server, thread, url)
