"""Fault campaigns on the model registry: racing writer processes, writers killed mid-change,
and artifacts that must be refused.

Shared by ``benchmarks/faults_batch.py`` and ``tests/e2e/test_batch_fault_campaign.py``.
Every change goes through the public API (:class:`Registry` promote, :class:`RolloutStore`
update) from separate processes on one registry root; afterwards the registry is read back
and counted: every change a writer saw succeed must be in the alias's audit log and history
(``lost`` otherwise), the audit log holds one row per change (``duplicated`` beyond that), and
the final state is the last committed change.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import skops.io
from sklearn.linear_model import LogisticRegression

from lakecast.errors import LakecastError
from lakecast.registry import ModelCard, Registry, Signature
from lakecast.rollout.store import RolloutStore
from lakecast.rollout.strategies import Canary, RolloutState

MODEL = "ctr"
ALIAS = "champion"
SIGNATURE = Signature.of(["a", "b"])
CRASH_POINTS = ("before commit", "after commit")


@dataclass(frozen=True)
class Counts:
    """What reading a registry back found."""

    changes: int  # changes the writers saw succeed
    lost: int  # of those, missing from the history or the audit log; or a lost final state
    duplicated: int  # audit or history rows beyond one per change
    audit_rows: int  # alias audit rows plus rollout history rows after the seeded revision
    committed: int  # changes the registry holds (alias seq plus rollout revisions after the first)


def seeded_registry(root: Path, versions: int) -> Registry:
    """A registry with ``versions`` versions of :data:`MODEL` (one model, then card patches)
    and a running canary of it, so that every promotion can name a version never used."""
    registry = Registry(root)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    registry.register(MODEL, model, signature=SIGNATURE)
    for i in range(1, versions):
        registry.register(MODEL, card=ModelCard(model_details=f"patch {i}"))
    spec = Canary(id="campaign", champion=f"{MODEL}:1.0.0", candidate=f"{MODEL}:1.0.1")
    RolloutStore(str(root)).start(RolloutState(model=MODEL, spec=spec), who="seed")
    return registry


def _self_kill(at: str, nth: int) -> Callable[[str], None]:
    """A crash point that SIGKILLs this process the ``nth`` time a write reaches ``at``."""
    reached = Counter[str]()

    def crash(point: str) -> None:
        reached[point] += 1
        if point == at and reached[point] == nth:
            os.kill(os.getpid(), signal.SIGKILL)

    return crash


def _mark(who: str) -> Callable[[RolloutState, dict[str, Any]], tuple[RolloutState, dict]]:
    """A rollout change: the same state, the controller settings naming the writer."""

    def change(state: RolloutState, controller: dict[str, Any]) -> tuple[RolloutState, dict]:
        return state, controller | {"last": who}

    return change


def _writer(
    root: str,
    name: str,
    versions: list[str],
    report: str,
    start: Any,
    crash_at: tuple[str, int] | None,
) -> None:
    """Make one change per version (a promotion) and one rollout update after each; append a
    line to ``report`` for every change that returned success."""
    crash_point = _self_kill(*crash_at) if crash_at else None
    registry = Registry(root, crash_point=crash_point)
    store = RolloutStore(root, crash_point=crash_point)
    if start is not None:
        start.wait()
    with open(report, "ab", buffering=0) as out:
        for number, version in enumerate(versions):
            who = f"{name}-{number}"
            state = registry.promote(MODEL, version, ALIAS, who=who, why="campaign")
            line = {"kind": "alias", "who": who, "seq": state.seq, "version": state.version}
            out.write(orjson.dumps(line) + b"\n")
            record = store.update(MODEL, _mark(who), who=who)
            line = {"kind": "rollout", "who": who, "seq": record.revision}
            out.write(orjson.dumps(line) + b"\n")


def _reported(report: Path) -> list[dict[str, Any]]:
    if not report.exists():
        return []
    lines = report.read_bytes().splitlines()
    return [orjson.loads(line) for line in lines if line.strip()]


def check_registry(root: Path, reported: list[dict[str, Any]]) -> Counts:
    """Count what the registry at ``root`` holds against the changes writers reported."""
    registry = Registry(root)
    store = RolloutStore(str(root))
    lost = duplicated = 0
    moves = [e for e in registry.audit(MODEL) if e.alias == ALIAS]
    per_seq = Counter(e.seq for e in moves)
    duplicated += sum(n - 1 for n in per_seq.values())
    by_seq = {int(e.seq or 0): e for e in moves}
    history = store.history(MODEL)
    per_revision = Counter(r.revision for r in history)
    duplicated += sum(n - 1 for n in per_revision.values())
    by_revision = {r.revision: r for r in history}
    for change in reported:
        if change["kind"] == "alias":
            entry = by_seq.get(change["seq"])
            ok = entry is not None and (entry.version, entry.who) == (
                change["version"],
                change["who"],
            )
        else:
            found = by_revision.get(change["seq"])
            ok = found is not None and found.updated_by == change["who"]
        lost += 0 if ok else 1
    state = registry.aliases(MODEL).get(ALIAS)
    seq = state.seq if state else 0
    ordered = [by_seq[s].version for s in sorted(by_seq)]
    # The state is the last committed move, and every move is in its history, in order.
    if state is not None and (
        sorted(by_seq) != list(range(1, seq + 1))
        or state.version != ordered[-1]
        or state.history != tuple(ordered[:-1])
    ):
        lost += 1
    current = store.record(MODEL)
    revision = current.revision if current else 0
    if sorted(by_revision) != list(range(1, revision + 1)):
        lost += 1
    return Counts(
        changes=len(reported),
        lost=lost,
        duplicated=duplicated,
        audit_rows=len(moves) + len([r for r in history if r.revision > 1]),
        committed=seq + max(revision - 1, 0),
    )


def concurrent_writers(root: Path, processes: int, changes: int, timeout_s: float = 600) -> Counts:
    """``processes`` writer processes released together, each making ``changes`` promotions
    (each to a version of its own) and as many rollout updates; the registry counted after."""
    versions = [v.version for v in seeded_registry(root, processes * changes + 1).versions(MODEL)]
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes)
    report = root / "reported.jsonl"
    workers = [
        context.Process(
            target=_writer,
            args=(
                str(root),
                f"w{i}",
                versions[1 + i * changes : 1 + (i + 1) * changes],
                str(report),
                start,
                None,
            ),
        )
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=timeout_s)
    failed = [w.exitcode for w in workers if w.exitcode != 0]
    if failed:
        msg = f"registry writers exited {failed}"
        raise LakecastError(msg)
    return check_registry(root, _reported(report))


def crash_trial(
    root: Path, point: tuple[str, int] | None, *, kill_after_s: float | None = None
) -> Counts:
    """One writer process killed mid-change: by itself the nth time a write reaches a named
    point (``point``: ("after commit", 1) is the first promotion's, 2 the rollout update after
    it), or by SIGKILL from here after ``kill_after_s``; then the registry is counted.

    ``committed`` tells whether the killed change landed: both its state and its audit row,
    or neither, is what ``lost == 0`` means.
    """
    versions = [v.version for v in seeded_registry(root, 4).versions(MODEL)]
    report = root / "reported.jsonl"
    context = multiprocessing.get_context("spawn")
    worker = context.Process(
        target=_writer, args=(str(root), "crash", versions[1:], str(report), None, point)
    )
    worker.start()
    if kill_after_s is not None:
        time.sleep(kill_after_s)
        if worker.pid is not None and worker.is_alive():
            os.kill(worker.pid, signal.SIGKILL)
    worker.join(timeout=300)
    return check_registry(root, _reported(report))


# ---- artifacts that must be refused ---------------------------------------------------------


class SneakyClassifier(LogisticRegression):
    """A type skops does not know and the trusted list does not name."""


class _Payload:
    """Unpickling this creates ``marker``: proof that the loader ran the file's code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, ...]]:
        return (os.mkdir, (self.marker,))


def _model() -> LogisticRegression:
    x = np.random.default_rng(1).normal(size=(40, 2))
    return LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))


def hostile_versions(root: Path) -> dict[str, str]:
    """Register three versions whose artifacts must never load; kind -> ``NAME:VERSION``.

    ``pickle``: pickle bytes (whose unpickling runs code) as a ``.skops`` file; ``tampered``:
    a good artifact with one byte flipped after registration; ``untrusted``: a skops file of a
    type outside the trusted list. The hostile files are registered unvalidated, as a writer
    that bypasses the checks would.
    """
    registry = Registry(root)
    files = root / "hostile"
    files.mkdir(parents=True, exist_ok=True)
    refs: dict[str, str] = {}
    pickled = files / "model.skops"
    pickled.write_bytes(pickle.dumps(_Payload(str(root / "pickle-ran"))))
    record = registry.register(
        "pickled", artifact=pickled, signature=SIGNATURE, validate=False, flavor="sklearn"
    )
    refs["pickle"] = record.ref
    record = registry.register("tampered", _model(), signature=SIGNATURE)
    path = Path(record.artifact_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    refs["tampered"] = record.ref
    x = np.random.default_rng(2).normal(size=(40, 2))
    sneaky = SneakyClassifier().fit(x, (x[:, 0] > 0).astype(int))
    untrusted = files / "sneaky.skops"
    skops.io.dump(sneaky, untrusted)
    record = registry.register(
        "untrusted", artifact=untrusted, signature=SIGNATURE, validate=False, flavor="sklearn"
    )
    refs["untrusted"] = record.ref
    return refs


def refusals(root: Path, attempts: int) -> dict[str, tuple[int, int]]:
    """Load each hostile version ``attempts`` times through :meth:`Registry.load`, as a
    scoring job or a worker does; kind -> (refused, accepted). A pickle whose code ran counts
    as accepted."""
    refs = hostile_versions(root)
    counts: dict[str, tuple[int, int]] = {}
    for kind, ref in refs.items():
        refused = accepted = 0
        for _ in range(attempts):
            try:
                Registry(root).load(ref)
            except LakecastError:
                refused += 1
            else:
                accepted += 1
        counts[kind] = (refused, accepted)
    if (root / "pickle-ran").exists():
        refused, accepted = counts["pickle"]
        counts["pickle"] = (refused, accepted + 1)
    return counts
