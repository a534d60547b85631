"""The rollout store (compare-and-set on real Delta tables) and the routing source workers poll."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from lakecast.errors import RolloutError
from lakecast.rollout.source import RolloutSource
from lakecast.rollout.store import RolloutStore
from lakecast.rollout.strategies import Canary, RolloutState


def _canary(model: str = "ctr", rollout_id: str = "c1") -> RolloutState:
    spec = Canary(id=rollout_id, champion=f"{model}:1.0.0", candidate=f"{model}:1.1.0")
    return RolloutState(model=model, spec=spec)


def _advance(state: RolloutState, controller: dict[str, Any]) -> tuple[RolloutState, dict]:
    assert isinstance(state.spec, Canary)
    return state.next_revision(spec=state.spec.advanced().model_dump()), controller


def test_start_update_and_history(tmp_path: Path) -> None:
    store = RolloutStore(str(tmp_path / "reg"))
    assert store.current("ctr") is None
    assert store.table_version() is None
    started = store.start(_canary(), {"step_seconds": 5}, who="dana", reason="canary")
    assert started.revision == 1
    assert started.controller == {"step_seconds": 5}
    updated = store.update("ctr", _advance, who="controller", reason="pass")
    assert updated.revision == 2
    current = store.current("ctr")
    assert current is not None
    assert (current.revision, current.spec.percent) == (2, 25.0)  # type: ignore[union-attr]
    assert current.updated_at is not None
    history = store.history("ctr")
    assert [(r.revision, r.updated_by, r.reason) for r in history] == [
        (1, "dana", "canary"),
        (2, "controller", "pass"),
    ]
    assert store.record("ctr").controller == {"step_seconds": 5}  # type: ignore[union-attr]


def test_no_change_writes_nothing(tmp_path: Path) -> None:
    store = RolloutStore(str(tmp_path / "reg"))
    store.start(_canary(), who="dana")
    version = store.table_version()
    same = store.update("ctr", lambda state, controller: None, who="controller")
    assert same.revision == 1
    assert store.table_version() == version


def test_running_rollout_blocks_a_new_one_until_it_ends(tmp_path: Path) -> None:
    store = RolloutStore(str(tmp_path / "reg"))
    store.start(_canary(), who="dana")
    with pytest.raises(RolloutError, match=r"'c1'.*still running"):
        store.start(_canary(rollout_id="c2"), who="dana")
    store.update("ctr", lambda s, c: (s.next_revision(status="rolled_back"), c), who="controller")
    second = store.start(_canary(rollout_id="c2"), who="dana")
    assert (second.revision, second.state.spec.id, second.state.status) == (3, "c2", "running")
    with pytest.raises(RolloutError, match="no rollout of that model"):
        store.update("other", _advance, who="x")


def test_models_are_independent(tmp_path: Path) -> None:
    store = RolloutStore(str(tmp_path / "reg"))
    store.start(_canary("ctr"), who="a")
    store.start(_canary("churn"), who="b")
    store.update("churn", _advance, who="c")
    current = store.all_current()
    assert {name: record.revision for name, record in current.items()} == {"ctr": 1, "churn": 2}


def test_concurrent_updates_are_never_lost(tmp_path: Path) -> None:
    store = RolloutStore(str(tmp_path / "reg"))
    store.start(_canary(), {"count": 0}, who="dana")
    writers = 4
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def count(state: RolloutState, controller: dict[str, Any]) -> tuple[RolloutState, dict]:
        return state, controller | {"count": controller["count"] + 1}

    def writer() -> None:
        try:
            barrier.wait()
            RolloutStore(str(tmp_path / "reg")).update("ctr", count, who="w")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    record = store.record("ctr")
    assert record is not None
    assert (record.revision, record.controller["count"]) == (writers + 1, writers)
    assert [r.revision for r in store.history("ctr")] == list(range(1, writers + 2))


def test_source_reads_rows_only_when_the_table_moved(tmp_path: Path) -> None:
    root = str(tmp_path / "reg")
    now = [0.0]
    source = RolloutSource(root, "ctr", interval_s=2.0, clock=lambda: now[0])
    assert source.current() is None  # no table yet: serve the champion
    store = RolloutStore(root)
    store.start(_canary(), who="dana")
    assert source.current() is None  # within the interval: the cached answer
    now[0] = 2.0
    first = source.current()
    assert first is not None
    assert first.revision == 1
    reads = source.reads
    for step in range(3, 6):
        now[0] = float(step * 2)
        assert source.current() == first
    assert source.reads == reads  # unchanged table: version checked, no rows read
    store.update("ctr", _advance, who="controller")
    now[0] = 20.0
    second = source.current()
    assert second is not None
    assert (second.revision, second.spec.percent) == (2, 25.0)  # type: ignore[union-attr]
    assert source.reads == reads + 1


def test_source_keeps_serving_the_last_state_when_the_store_breaks(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    now = [0.0]
    store = RolloutStore(str(root))
    store.start(_canary(), who="dana")
    source = RolloutSource(str(root), "ctr", interval_s=1.0, clock=lambda: now[0])
    state = source.current()
    assert state is not None
    # A torn commit: the next log entry is not JSON.
    assert source.table_version is not None
    torn = root / "rollouts" / "_delta_log" / f"{source.table_version + 1:020d}.json"
    torn.write_text("{not json")
    now[0] = 5.0
    assert source.current() == state
    assert source.failures == 1
