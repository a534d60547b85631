"""The worker's per-batch model time before and after optimisation (issue 19), no broker:
benchmarks/streaming.py --model-times-only."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

MODEL_BATCH_SIZES = (20, 200, 2_000)  # a paced worker's batches, up to serving.max_batch


def model_batch_times(repeats: int = 30) -> None:
    """The worker's per-batch model time (Predictor.predict on the worker's own feature rows,
    as its loop calls it, one native thread) for a demo-like champion (HistGradientBoosting)
    and challenger (Keras MLP), before (their own flavor) and after (their optimised kinds)."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from lakecast.models.optimize import optimize_version
    from lakecast.registry import Registry
    from lakecast.testing.features import training_matrix
    from lakecast.testing.models import register_with_holdout, write_features_table

    root = Path(tempfile.mkdtemp(prefix="lakecast-bench-models-"))
    try:
        features = str(root / "features")
        write_features_table(features, rows=3_000, online=True)
        registry = Registry(root / "registry")
        versions = []
        kinds_of = {"sklearn": ("onnx", "onnx-fp32"), "keras": ("onnx", "onnx-int8", "xla")}
        for flavor, kinds in kinds_of.items():
            source = register_with_holdout(registry, features, flavor)  # type: ignore[arg-type]
            versions.append((flavor, "source", source.ref))
            for kind in kinds:
                versions.append(
                    (flavor, kind, optimize_version(registry, source.ref, kind).record.ref)
                )
        matrix = training_matrix(max(MODEL_BATCH_SIZES))
        print(f"\nper-batch model time, ms (median of {repeats}; one native thread)")
        print(
            f"{'model':<8}{'kind':<11}{'version':<18}"
            + "".join(f"{f'{b} rows':>12}" for b in MODEL_BATCH_SIZES)
        )
        with threadpool_limits(limits=1):
            for flavor, kind, ref in versions:
                _, predictor = registry.load(ref)
                cells = []
                for size in MODEL_BATCH_SIZES:
                    batch = matrix[:size]
                    predictor.predict(batch)
                    times = []
                    for _ in range(repeats):
                        started = time.perf_counter()
                        predictor.predict(batch)
                        times.append(1_000 * (time.perf_counter() - started))
                    cells.append(f"{np.median(times):>12.3f}")
                print(f"{flavor:<8}{kind:<11}{ref:<18}" + "".join(cells))
    finally:
        shutil.rmtree(root, ignore_errors=True)
