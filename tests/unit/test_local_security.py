"""The secured local broker's plan: who may do what, and storage of one kind only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lakecast.config import KafkaSettings
from lakecast.errors import LocalStackError
from lakecast.local.broker import LocalBroker
from lakecast.local.security import SecureBrokerFiles, service_grants

TOPICS = KafkaSettings().topics


def writers(topic: str) -> set[str]:
    grants = service_grants(KafkaSettings(), "lakecast-inference")
    return {g.principal for g in grants if g.resource == "topic" and g.name == topic and
            g.operation == "WRITE"}  # fmt: skip


def test_only_the_services_that_emit_signals_may_write_metrics() -> None:
    assert writers(TOPICS.metrics) == {"worker", "monitor", "autoscaler"}
    assert writers(TOPICS.events) == {"replay"}
    assert writers(TOPICS.predictions) == {"worker"}
    grants = service_grants(KafkaSettings(), "lakecast-inference")
    replay = {str(g) for g in grants if g.principal == "replay"}
    assert replay == {"User:replay WRITE topic 'events'"}


def test_secrets_are_private_and_made_once(tmp_path: Path) -> None:
    files = SecureBrokerFiles(tmp_path / "secure")
    files.ensure()
    first = files.password("worker")
    files.ensure()
    assert files.password("worker") == first
    assert len(first) == 48
    for path in files.root.rglob("*"):
        assert path.stat().st_mode & 0o077 == 0, path
    written = files.write_overlays("127.0.0.1:1")
    assert str(files.password_file("worker")) in written["worker"].read_text()
    assert first not in written["worker"].read_text()


@pytest.mark.parametrize("secured_storage", [True, False])
def test_a_storage_is_started_only_as_the_kind_it_was_formatted_for(
    tmp_path: Path, secured_storage: bool
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "meta.properties").write_text("cluster.id=x\n")
    (tmp_path / "storage.json").write_text(json.dumps({"secure": secured_storage}))
    broker = LocalBroker(
        tmp_path,
        port=1,
        controller_port=2,
        classpath="",
        security=None if secured_storage else SecureBrokerFiles(tmp_path / "secure"),
    )
    hint = "with --secure" if secured_storage else "without --secure"
    with pytest.raises(LocalStackError, match=hint):
        broker.start()
