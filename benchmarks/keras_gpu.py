"""The Keras scoring path on a GPU: placement, parity with the CPU, and rows/s against the limit.

A Spark executor with a GPU gives its task the addresses in ``TaskContext.resources()["gpu"]``;
the Python worker pins itself to the first one (``lakecast.scoring.placement``) before Keras is
imported, then builds the predictor from the broadcast payload (``predictor_for``). This script
runs that worker-side path without Spark, on a machine that may have no TensorFlow or pyspark:

    # here (TensorFlow): train and register a model, write its payload and CPU reference scores
    .venv/bin/python benchmarks/keras_gpu.py prepare --out gpu-check
    # on the GPU machine (KERAS_BACKEND=jax), with lakecast's lib/ on the path
    KERAS_BACKEND=jax python3 benchmarks/keras_gpu.py check --payload gpu-check

``check`` prints: the placement and the devices the backend sees; the largest difference from
the CPU reference scores (float32 matmuls on a GPU may use TF32); rows/s of lakecast's
predictor (one call per Arrow batch, as ``mapInArrow`` gives them) beside the raw model's
``predict`` on the same matrix in memory (the limit); the GPU memory the process holds (growth
on, not the whole card); and, in a child process given no GPU, that the CPU is used instead.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

REFERENCE_ROWS = 100_000
SEED = 7
DEFAULT_DIR = Path("gpu-check")


def features(rows: int, seed: int = SEED) -> np.ndarray:
    from lakecast.testing.features import synthetic_feature_matrix

    return synthetic_feature_matrix(rows, seed)[0]


def prepare(out: Path) -> None:
    """Train the benchmark's Keras MLP, register it, write payload + CPU reference scores."""
    import tempfile

    from lakecast.models.training import MlpRecipe
    from lakecast.models.training_run import model_signature
    from lakecast.registry import Registry
    from lakecast.scoring.cache import ModelPayload, predictor_for
    from lakecast.testing.features import synthetic_feature_matrix

    out.mkdir(parents=True, exist_ok=True)
    x, y = synthetic_feature_matrix(200_000, SEED + 1000)
    model = MlpRecipe(hidden=(64, 32), epochs=1, seed=SEED).fit(x, y)
    with tempfile.TemporaryDirectory() as root:
        record = Registry(Path(root) / "registry").register(
            "gpu_check", model, flavor="keras", signature=model_signature(),
            nan_policy="propagate",
        )  # fmt: skip
        payload = ModelPayload.from_version(record)
    (out / "artifact.keras").write_bytes(payload.artifact)
    fields = {k: getattr(payload, k) for k in ("name", "version", "sha256", "flavor")}
    fields |= {"signature_json": payload.signature_json, "nan_policy": payload.nan_policy}
    (out / "payload.json").write_text(json.dumps(fields, indent=1))
    reference = predictor_for(payload).predict(features(REFERENCE_ROWS))
    np.save(out / "reference.npy", reference)
    print(f"wrote {out}: {payload.where}, sha256 {payload.sha256[:12]}, {REFERENCE_ROWS} scores")


def load_payload(directory: Path) -> Any:
    from lakecast.scoring.cache import ModelPayload

    fields = json.loads((directory / "payload.json").read_text())
    return ModelPayload(artifact=(directory / "artifact.keras").read_bytes(), **fields)


def arrow_batch(matrix: np.ndarray, names: list[str]) -> pa.RecordBatch:
    """Columns of float64, as Spark's ``mapInArrow`` hands a worker the feature rows."""
    return pa.RecordBatch.from_arrays([pa.array(matrix[:, i]) for i in range(len(names))], names)


def rate(action: Callable[[], Any], rows: int, repeats: int = 3) -> float:
    """Best rows/s of ``repeats`` timed runs, after one warm-up (compilation, transfers)."""
    action()
    best = min(_seconds(action) for _ in range(repeats))
    return rows / best


def _seconds(action: Callable[[], Any]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def table_row(name: str, rows_per_s: float, limit: float) -> None:
    print(f"{name:44} {rows_per_s:12,.0f} {rows_per_s / limit:7.2f}")


def gpu_memory_mib() -> str:
    query = ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader"]
    try:
        lines = subprocess.run(query, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"unknown ({exc})"
    mine = [ln for ln in lines.splitlines() if ln.split(",")[0].strip() == str(os.getpid())]
    return mine[0].split(",")[1].strip() if mine else f"not listed ({lines.strip()!r})"


def check(directory: Path, rows: int, batch_sizes: list[int]) -> None:
    from lakecast.scoring import cache
    from lakecast.scoring.placement import place_worker

    # What Spark's resource scheduling hands a task on a GPU executor.
    cache._placement = place_worker(["0"])
    from lakecast.scoring.cache import predictor_for

    payload = load_payload(directory)
    predictor = predictor_for(payload)
    keras = sys.modules["keras"]
    backend = keras.backend.backend()
    print(f"placement {cache._placement.device}; keras {keras.__version__} on {backend}")
    if backend == "jax":
        import jax

        print(f"jax {jax.__version__} devices {jax.devices()}")

    reference = np.load(directory / "reference.npy")
    scores = predictor.predict(features(REFERENCE_ROWS))
    diff = float(np.max(np.abs(scores - reference)))
    print(
        f"parity with the CPU (TensorFlow) scores on {REFERENCE_ROWS:,} rows: max |diff| {diff:.2e}"
    )
    if backend == "jax":
        # The placement asks for full float32 matmuls; what TF32 (JAX's default) would give:
        with jax.default_matmul_precision("tensorfloat32"):
            fast = predictor.predict(features(REFERENCE_ROWS))
        print(f"  with TF32 matmuls instead: {np.max(np.abs(fast - reference)):.2e}")

    matrix = features(rows)
    names = payload.signature.input_names
    as32 = np.ascontiguousarray(matrix, dtype=np.float32)
    model = predictor.model  # type: ignore[attr-defined]
    fit = rate(lambda: model.predict(as32, batch_size=8192, verbose=0), rows)
    slices = [as32[i : i + 65536] for i in range(0, rows, 65536)]
    on_batch = rate(lambda: [np.asarray(model.predict_on_batch(s)) for s in slices], rows)
    limit = max(fit, on_batch)
    print(f"\n{'method':44} {'rows/s':>12} {'ratio':>7}")
    print(f"{'keras model.predict(batch_size=8192)':44} {fit:12,.0f} {fit / limit:7.2f}")
    print(
        f"{'keras predict_on_batch, slices of 65,536':44} {on_batch:12,.0f} {on_batch / limit:7.2f}"
    )
    for batch in batch_sizes:
        chunks = [arrow_batch(matrix[i : i + batch], names) for i in range(0, rows, batch)]
        got = rate(lambda: [predictor.predict(c) for c in chunks], rows)  # noqa: B023
        table_row(f"lakecast predictor, Arrow batches of {batch:,}", got, limit)
    print("limit: the faster raw keras call; lakecast adds the NaN policy and column checks")
    print(f"\nGPU memory held by this process: {gpu_memory_mib()} (growth on)")

    child = [sys.executable, __file__, "cpu-fallback", "--payload", str(directory)]
    print(subprocess.run(child, capture_output=True, text=True, check=True).stdout.strip())


def cpu_fallback(directory: Path) -> None:
    """A worker whose task got no GPU: placement hides the GPUs, the backend uses the CPU."""
    from lakecast.scoring import cache
    from lakecast.scoring.cache import predictor_for
    from lakecast.scoring.placement import place_worker

    # A task given no GPU (this child inherits the parent's CUDA_VISIBLE_DEVICES=0).
    placement = cache._placement = place_worker([])
    predictor = predictor_for(load_payload(directory))
    devices = "?"
    if sys.modules["keras"].backend.backend() == "jax":
        import jax

        devices = str(jax.devices())
    scores = predictor.predict(features(1000))
    print(f"no GPU assigned: placement {placement.device}, devices {devices}, scored {scores.size}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["prepare", "check", "cpu-fallback"])
    parser.add_argument(
        "--out", "--payload", dest="directory", type=Path, default=Path("gpu-check")
    )
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--batch-size", type=int, action="append", dest="batch_sizes")
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args.directory)
    elif args.step == "check":
        check(args.directory, args.rows, args.batch_sizes or [8192, 65536])
    else:
        cpu_fallback(args.directory)


if __name__ == "__main__":
    main()
