"""The optimised kinds' rows of benchmarks/batch_scoring.py (issue 19): each kind converted as
``lakecast models optimize`` converts it, its in-process ONNX Runtime rates and both lakecast
paths, with parity against the source."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from batch_scoring_paths import (
    Source,
    best_of,
    direct_path,
    keras_on_batch,
    lakecast_path,
    run_spark,
    timed,
)

from lakecast.models.flavors.onnx_flavor import SLICE_ROWS

OPTIMIZED_KINDS = {"sklearn": ("onnx", "onnx-fp32"), "keras": ("onnx", "onnx-int8")}


def optimize_models(root: Path, trained: dict[str, Any]) -> dict[str, list[tuple[str, Any]]]:
    """Each flavor's optimised kinds, converted as ``lakecast models optimize`` converts them
    and registered as onnx versions (parity is measured here, on the benchmark's matrix)."""
    from lakecast.models.optimize import check_kind, convert
    from lakecast.registry import Registry

    registry = Registry(root / "registry")
    optimized: dict[str, list[tuple[str, Any]]] = {}
    for flavor, (record, model) in trained.items():
        optimized[flavor] = []
        for kind in OPTIMIZED_KINDS[flavor]:
            data, _ = convert(record, model, check_kind(kind), f"bench {kind}")
            path = root / f"{flavor}-{kind}" / "model.onnx"
            path.parent.mkdir()
            path.write_bytes(data)
            version = registry.register(
                record.name, artifact=path, flavor="onnx", signature=record.signature,
                nan_policy=record.nan_policy, bump="minor",
            )  # fmt: skip
            optimized[flavor].append((kind, version))
    return optimized


@dataclass(frozen=True)
class InProcessRun:
    """A session's run on the whole ready matrix (callable), and what a slicing run reuses."""

    session: Any
    feed: str
    ready: np.ndarray

    def __call__(self) -> Any:
        return self.session.run(None, {self.feed: self.ready})

    def sliced(self, rows: int) -> Callable[[], Any]:
        """The same session on ``rows``-row slices of the ready matrix."""
        slices = [self.ready[i : i + rows] for i in range(0, len(self.ready), rows)]
        return lambda: [self.session.run(None, {self.feed: s}) for s in slices]


def onnx_in_process(record: Any, matrix: np.ndarray, threads: int | None) -> InProcessRun:
    """An ONNX Runtime session's run on the ready matrix (the optimised kind's own limit)."""
    from lakecast.models.flavors.onnx_flavor import load
    from lakecast.registry.artifacts import read_verified

    data = read_verified(Path(record.artifact_path), record.sha256, record.name, record.version)
    session = load(data, "bench", threads=threads)
    feed = session.get_inputs()[0]
    ready = np.ascontiguousarray(
        matrix, dtype=np.float32 if feed.type == "tensor(float)" else np.float64
    )
    session.run(None, {feed.name: ready[:256]})
    run = InProcessRun(session, feed.name, ready)
    return run


def served_in_process(record: Any, matrix: np.ndarray) -> Callable[[], Any]:
    """The version's lakecast predictor (all cores) on the ready float64 matrix, as
    ``registry.load`` serves it: the conversion to the graph's dtype and its slicing."""
    from lakecast.models.flavors import build_predictor
    from lakecast.registry.artifacts import read_verified

    data = read_verified(Path(record.artifact_path), record.sha256, record.name, record.version)
    predictor = build_predictor(
        data, "onnx", record.signature, record.nan_policy, "bench", sha256_verified=True,
        threads=os.cpu_count(),
    )  # fmt: skip
    predictor.predict(matrix[:256])
    return lambda: predictor.predict(matrix)


def parity(source: np.ndarray, optimized: np.ndarray) -> str:
    diff = np.abs(np.asarray(source, np.float64).reshape(-1) - optimized.reshape(-1))
    return f"parity max {diff.max():.2g}, p99.9 {np.quantile(diff, 0.999):.2g}"


# (flavor, kind, method, rows/s, ratio to the source's limit, rows per CPU-second, note)
OptimizedRow = tuple[str, str, str, float, float, float, str]

SOURCE_LIMITS = {"sklearn": "in-process predict (limit)", "keras": "in-process predict_on_batch"}


def source_scores(flavor: str, model: Any, matrix: np.ndarray) -> np.ndarray:
    if flavor == "sklearn":
        return np.asarray(model.predict_proba(matrix)[:, 1])
    as32 = np.ascontiguousarray(matrix, dtype=np.float32)
    slices = [model.predict_on_batch(as32[i : i + 65_536]) for i in range(0, len(as32), 65_536)]
    return np.concatenate([np.asarray(s).reshape(-1) for s in slices])


def source_on_slices(flavor: str, model: Any, matrix: np.ndarray, rows: int) -> Callable[[], Any]:
    """The source model on ``rows``-row slices (a batch path's batches), one call each."""
    if flavor == "sklearn":
        slices = [matrix[i : i + rows] for i in range(0, len(matrix), rows)]
        return lambda: [model.predict_proba(s) for s in slices]
    return keras_on_batch(model, matrix, rows)


def onnx_on_slices(record: Any, matrix: np.ndarray, rows: int) -> Callable[[], Any]:
    """A one-thread session on ``rows``-row slices, as a Spark task runs it."""
    return onnx_in_process(record, matrix, threads=1).sliced(rows)


def optimized_rows(
    sources: tuple[Source, Source],
    flavor: str,
    kind: str,
    record: Any,
    model: Any,
    matrix: np.ndarray,
    batch_size: int,
    source_limits: tuple[float, float],
) -> list[OptimizedRow]:
    """One optimised kind's rows: in-process ONNX Runtime (1 thread, all cores, 1 thread on
    ``batch_size``-row slices), both lakecast paths. ``source_limits``: the source's limit
    and its rate on the same slices."""
    full, warm = sources
    limit, on_slices = source_limits
    rows = len(matrix)
    found: list[OptimizedRow] = []
    single = onnx_in_process(record, matrix, threads=1)
    all_cores = onnx_in_process(record, matrix, threads=os.cpu_count())
    scores = np.asarray(single()[0]).reshape(-1)
    note = parity(source_scores(flavor, model, matrix), scores)
    runs: list[tuple[str, Callable[[], Any]]] = [
        ("in-process session, 1 thread", single),
        ("in-process session, all cores", all_cores),
        (f"all cores, {SLICE_ROWS:,}-row slices", all_cores.sliced(SLICE_ROWS)),
        ("lakecast predictor, all cores", served_in_process(record, matrix)),
        (f"in-process, {batch_size:,}-row calls", onnx_on_slices(record, matrix, batch_size)),
    ]
    for label, run in runs:
        rate, per_cpu = best_of(run).rates(rows)
        if label.endswith("calls"):
            note = f"{rate / on_slices:.2f}x the source on the same calls"
        found.append((flavor, kind, label, rate, rate / limit, per_cpu, note))
    for label, path in [
        ("lakecast mapInArrow", lakecast_path),
        ("lakecast direct read", direct_path),
    ]:
        run_spark(path(warm, record, batch_size))
        rate, per_cpu = timed(lambda p=path: run_spark(p(full, record, batch_size))).rates(rows)
        found.append((flavor, kind, label, rate, rate / limit, per_cpu, ""))
    return found


def compute_bound(model: Any, rate: float) -> str:
    """How near a Keras MLP's ``rate`` (rows/s) is to this CPU's float32 matmul peak: a kind
    cannot be 2x a source that already runs above half of it."""
    import keras

    flops = sum(
        2 * int(np.prod(layer.kernel.shape))
        for layer in model.layers
        if isinstance(layer, keras.layers.Dense)
    )
    size = 2048
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    a @ a
    peak = 2 * size**3 / min(timed(lambda: a @ a).wall for _ in range(5))
    achieved = flops * rate
    return (
        f"Keras predict_on_batch: {flops:,} flops a row, {achieved / 1e9:.1f} GFLOP/s = "
        f"{achieved / peak:.0%} of this CPU's float32 matmul peak ({peak / 1e9:.1f} GFLOP/s, "
        f"numpy {size}x{size}, all cores); a kind 2x as fast needs {2 * achieved / peak:.0%}"
    )


def print_optimized(results: list[OptimizedRow]) -> None:
    print("optimised kinds (vs src: the source flavor's in-process limit, " + ", ".join(
        f"{f} {m}" for f, m in SOURCE_LIMITS.items()) + ")")  # fmt: skip
    print(
        f"{'flavor':<8} {'kind':<10} {'method':<30} {'rows/s':>12} {'vs src':>7} "
        f"{'rows/cpu-s':>11}  note"
    )
    for flavor, kind, method, rate, ratio, per_cpu, note in results:
        print(
            f"{flavor:<8} {kind:<10} {method:<30} {rate:>12,.0f} {ratio:>7.2f} "
            f"{per_cpu:>11,.0f}  {note}"
        )
    print()
