"""A change and its audit record are one commit: registrations and alias moves are read back
as the audit log, and a registry written by the release before (state rows updated in place,
audit rows appended after) still reads and moves on."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from sklearn.linear_model import LogisticRegression

from lakecast.registry import Registry, Signature
from lakecast.registry.store import SCHEMAS

SIG = Signature.of(["a", "b"])


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    registry = Registry(tmp_path / "registry")
    x = np.random.default_rng(0).normal(size=(40, 2))
    for i in range(2):
        model = LogisticRegression(C=1.0 + i).fit(x, (x[:, 0] > 0).astype(int))
        registry.register("ctr", model, signature=SIG, created_by="ana", description=f"v{i}")
    return registry


def test_every_change_is_one_commit_of_its_own_table(registry: Registry) -> None:
    aliases_before = registry.tables.latest_version("aliases")
    registry.promote("ctr", "1.0.0", "champion", who="bo", why="first")
    registry.promote("ctr", "1.1.0", "champion", who="bo", why="second")
    assert registry.tables.latest_version("aliases") == (aliases_before or 0) + 2
    assert registry.tables.open("audit") is None  # nothing written besides the moves
    entries = registry.audit("ctr")
    assert [(e.action, e.version, e.previous_version, e.who, e.reason) for e in entries] == [
        ("register", "1.0.0", None, "ana", "v0"),
        ("register", "1.1.0", None, "ana", "v1"),
        ("promote", "1.0.0", None, "bo", "first"),
        ("promote", "1.1.0", "1.0.0", "bo", "second"),
    ]


def test_a_registry_written_before_moves_were_rows_reads_and_moves_on(registry: Registry) -> None:
    now = datetime.now(UTC)
    legacy = pa.schema(
        [f for f in SCHEMAS["aliases"] if f.name not in ("action", "previous_version")]
    )
    row = {"name": "ctr", "alias": "champion", "version": "1.0.0", "history": "[]", "seq": 1,
           "updated_at": now, "updated_by": "old", "reason": "legacy"}  # fmt: skip
    write_deltalake(registry.tables.uri("aliases"), pa.Table.from_pylist([row], schema=legacy))
    audit = [
        {"at": now, "who": "old", "action": "register", "name": "ctr", "version": "1.0.0",
         "alias": None, "previous_version": None, "seq": None, "reason": "v0"},
        {"at": now, "who": "old", "action": "promote", "name": "ctr", "version": "1.0.0",
         "alias": "champion", "previous_version": None, "seq": 1, "reason": "legacy"},
    ]  # fmt: skip
    write_deltalake(registry.tables.uri("audit"), pa.Table.from_pylist(audit, SCHEMAS["audit"]))

    assert registry.resolve("ctr@champion").version == "1.0.0"
    state = registry.promote("ctr", "1.1.0", "champion", who="bo", why="new")
    assert (state.seq, state.history) == (2, ("1.0.0",))
    fields = {f.name for f in DeltaTable(registry.tables.uri("aliases")).schema().fields}
    assert {"action", "previous_version"} <= fields
    moves = [(e.action, e.version, e.seq, e.who) for e in registry.audit("ctr") if e.alias]
    assert moves == [("promote", "1.0.0", 1, "old"), ("promote", "1.1.0", 2, "bo")]
    registered = [e.version for e in registry.audit("ctr") if e.action == "register"]
    assert registered == ["1.0.0", "1.1.0"]  # from the versions rows, none twice
