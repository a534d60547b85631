"""Throwaway Kafka brokers for tests and benchmarks: one of their own, on free ports."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lakecast.local.broker import LocalBroker


def temporary_broker(state: Path, *, heap: str | None = None) -> LocalBroker:
    """A :class:`~lakecast.local.broker.LocalBroker` of its own on free ports (not started)."""
    from lakecast.config import settings
    from lakecast.local.jars import resolve_jars
    from lakecast.local.ports import free_port

    broker = LocalBroker(
        state,
        port=free_port(),
        controller_port=free_port(),
        classpath=resolve_jars(settings()).kafka_classpath,
    )
    if heap is not None:  # else LocalBroker's own default
        broker.heap = heap
    return broker


@contextmanager
def broker_or_temporary(bootstrap: str | None, *, heap: str | None = None) -> Iterator[str]:
    """The given cluster, or a started temporary broker in a temporary folder, stopped after."""
    if bootstrap:
        yield bootstrap
        return
    with tempfile.TemporaryDirectory(prefix="lakecast-bench-") as state:
        local = temporary_broker(Path(state), heap=heap)
        local.start()
        try:
            yield local.bootstrap_servers
        finally:
            local.stop()
