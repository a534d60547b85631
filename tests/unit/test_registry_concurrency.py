"""Concurrent promotions of one alias: none lost, audit and alias history consistent.

Real concurrency on real Delta tables (delta-rs): threads released together by a barrier, and
separate processes, all promoting the same alias at once.
"""

from __future__ import annotations

import itertools
import multiprocessing
import threading
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from lakecast.registry import ModelCard, Registry, Signature

SIG = Signature.of(["a", "b"])


def _registry_with_versions(root: Path, count: int) -> Registry:
    registry = Registry(root)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    registry.register("ctr", LogisticRegression().fit(x, (x[:, 0] > 0).astype(int)), signature=SIG)
    for i in range(1, count):
        registry.register("ctr", card=ModelCard(model_details=f"card {i}"))  # 1.0.i, cheap
    return registry


def _check_consistent(registry: Registry, promoted: set[str]) -> None:
    moves = sorted(
        (e for e in registry.audit("ctr") if e.alias == "champion"), key=lambda e: e.seq or 0
    )
    assert {e.version for e in moves} == promoted
    assert [e.seq for e in moves] == list(range(1, len(promoted) + 1))
    for before, after in itertools.pairwise(moves):
        assert after.previous_version == before.version
    state = registry.aliases("ctr")["champion"]
    assert state.seq == len(promoted)
    assert state.version == moves[-1].version
    assert state.history == tuple(e.version for e in moves[:-1])


def test_concurrent_thread_promotions_are_all_applied(tmp_path: Path) -> None:
    registry = _registry_with_versions(tmp_path / "registry", 4)
    versions = [v.version for v in registry.versions("ctr")]
    barrier = threading.Barrier(len(versions))
    errors: list[BaseException] = []

    def promote(version: str) -> None:
        mine = Registry(registry.root)  # each writer with its own handle, as separate services
        barrier.wait()
        try:
            mine.promote("ctr", version, "champion", who=f"user-{version}", why="race")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=promote, args=(v,)) for v in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    _check_consistent(registry, set(versions))


def _promote_in_process(root: str, version: str, start: object) -> None:
    registry = Registry(root)
    start.wait()  # type: ignore[attr-defined]
    registry.promote("ctr", version, "champion", who=f"proc-{version}", why="race")


@pytest.mark.timeout(300)
def test_concurrent_process_promotions_are_all_applied(tmp_path: Path) -> None:
    registry = _registry_with_versions(tmp_path / "registry", 3)
    versions = [v.version for v in registry.versions("ctr")]
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(len(versions))
    processes = [
        context.Process(target=_promote_in_process, args=(registry.root, v, start))
        for v in versions
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=240)
    assert [p.exitcode for p in processes] == [0] * len(versions)
    _check_consistent(registry, set(versions))
