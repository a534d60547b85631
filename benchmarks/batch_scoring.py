"""Batch-scoring throughput: lakecast's mapInArrow and direct-read paths against the in-process
limit, Spark's ``predict_batch_udf`` and a naive row-at-a-time Python UDF, for both flavors.

    nice -n 10 .venv/bin/python benchmarks/batch_scoring.py [--rows 2000000] [--batch-size 8192]

One run, the same data and the same models for every method:

- data: ``--rows`` synthetic feature rows (``event_id`` plus ``FEATURE_COLUMNS``, float64)
  written once as a Delta table with delta-rs (made directly, not by the feature pipeline, to
  stay fast), files of about CHUNK rows; every Spark method reads that Delta table;
- models: a HistGradientBoosting classifier and a Keras MLP trained on a sample of it and
  registered in a throw-away registry (so lakecast loads them as a job does: sha256-checked);
- in-process: the model's own predict on the whole numpy matrix, already in memory (the limit);
  for Keras also ``predict_on_batch`` on slices, which skips predict's tf.data pipeline (shown
  for reference: it is faster than the limit);
- Spark methods read the table, score, and write to Spark's ``noop`` sink (no output I/O), on
  ``local[*]``, each after one warm-up run on a small Delta table of the same schema in several
  files (workers started, models loaded);
- "lakecast direct read" is the path ``score_batch`` takes by default: Spark distributes the
  table's files, the Python workers read them with pyarrow, only keys and scores go back; its
  floor is the same read with no model;
- the row-at-a-time UDF runs on a subsample and is extrapolated (labelled as such);
- optimised kinds (``lakecast models optimize``'s converters: ``onnx`` for both flavors,
  ``onnx-int8`` for Keras) registered as ``onnx`` versions, each with its in-process ONNX
  Runtime rate (one session thread per Spark task is what lakecast runs; the limit row uses one
  thread too, and the default of all cores), both lakecast paths, and its parity (max and p99.9
  |score diff| against the source over the whole matrix); "vs src" is the ratio to the
  source's in-process limit (sklearn ``predict_proba``, Keras ``predict_on_batch``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from lakecast.features.spec import FEATURE_COLUMNS
from lakecast.testing.features import synthetic_feature_matrix

CHUNK = 250_000
ROW_BYTES = 8 * len(FEATURE_COLUMNS) + 11  # 49 float64 and an 11-byte id: random, incompressible


def write_features(path: Path, rows: int, seed: int, file_rows: int = CHUNK) -> None:
    """``rows`` rows of event_id + FEATURE_COLUMNS as a Delta table (one commit) whose Parquet
    files hold about ``file_rows`` rows each, in row groups of a quarter of that."""
    from deltalake import WriterProperties, write_deltalake

    names = ["event_id", *FEATURE_COLUMNS]

    def chunks() -> Iterator[pa.RecordBatch]:
        for part, start in enumerate(range(0, rows, CHUNK)):
            count = min(CHUNK, rows - start)
            matrix, _ = synthetic_feature_matrix(count, seed + part)
            ids = np.char.mod("e%010d", np.arange(start, start + count))
            arrays = [pa.array(ids), *(pa.array(matrix[:, i]) for i in range(matrix.shape[1]))]
            yield pa.RecordBatch.from_arrays(arrays, names=names)

    schema = pa.schema([("event_id", pa.string())] + [(c, pa.float64()) for c in FEATURE_COLUMNS])
    write_deltalake(
        str(path),
        pa.RecordBatchReader.from_batches(schema, chunks()),
        target_file_size=file_rows * ROW_BYTES,
        writer_properties=WriterProperties(max_row_group_size=max(1, file_rows // 4)),
    )


def read_matrix(path: Path) -> np.ndarray:
    from deltalake import DeltaTable

    table = DeltaTable(str(path)).to_pyarrow_dataset().to_table(columns=list(FEATURE_COLUMNS))
    return np.ascontiguousarray(
        np.column_stack([table.column(c).to_numpy() for c in FEATURE_COLUMNS])
    )


@dataclass(frozen=True)
class Source:
    """A Delta table every Spark method reads: as a DataFrame, or by path (the direct read)."""

    spark: Any
    path: str

    @property
    def frame(self) -> Any:
        return self.spark.read.format("delta").load(self.path)


@dataclass(frozen=True)
class Timing:
    """One timed run: wall seconds, and CPU seconds of this process and all its children (the
    Spark JVM, its Python workers). On a shared machine the wall time measures the load as
    much as the method; rows per CPU-second compare methods whatever the load."""

    wall: float
    cpu: float

    def rates(self, rows: int) -> tuple[float, float]:
        return rows / self.wall, rows / max(self.cpu, 1e-9)


def _tree_cpu() -> dict[int, float]:
    import psutil

    me = psutil.Process()
    seconds = {}
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:  # ended meanwhile
            continue
        seconds[process.pid] = times.user + times.system
    return seconds


def timed(action: Callable[[], Any]) -> Timing:
    before = _tree_cpu()
    started = time.perf_counter()
    action()
    wall = time.perf_counter() - started
    after = _tree_cpu()
    return Timing(wall, sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items()))


def train_models(root: Path, seed: int) -> dict[str, Any]:
    """Both flavors, trained on 200k synthetic rows and registered; name -> (record, model)."""
    from lakecast.models.training import GradientBoostingRecipe, MlpRecipe
    from lakecast.models.training_run import model_signature
    from lakecast.registry import Registry

    x, y = synthetic_feature_matrix(200_000, seed + 1000)
    registry = Registry(root / "registry")
    trained = {}
    for flavor, recipe in [
        ("sklearn", GradientBoostingRecipe(max_iter=100, seed=seed)),
        ("keras", MlpRecipe(hidden=(64, 32), epochs=1, seed=seed)),
    ]:
        model = recipe.fit(x, y)
        record = registry.register(
            f"bench_{flavor}", model, flavor=flavor, signature=model_signature(),
            nan_policy="propagate",
        )  # fmt: skip
        trained[flavor] = (record, model)
    return trained


OPTIMIZED_KINDS = {"sklearn": ("onnx",), "keras": ("onnx", "onnx-int8")}


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


def parity(source: np.ndarray, optimized: np.ndarray) -> str:
    diff = np.abs(np.asarray(source, np.float64).reshape(-1) - optimized.reshape(-1))
    return f"parity max {diff.max():.2g}, p99.9 {np.quantile(diff, 0.999):.2g}"


def in_process(flavor: str, model: Any, matrix: np.ndarray, batch_size: int) -> Callable[[], Any]:
    if flavor == "sklearn":
        return lambda: model.predict_proba(matrix)[:, 1]
    as32 = np.ascontiguousarray(matrix, dtype=np.float32)
    return lambda: model.predict(as32, batch_size=batch_size, verbose=0)


def keras_on_batch(model: Any, matrix: np.ndarray, rows: int = 65_536) -> Callable[[], Any]:
    as32 = np.ascontiguousarray(matrix, dtype=np.float32)
    slices = [as32[i : i + rows] for i in range(0, len(as32), rows)]
    for shape_seen in (slices[0], slices[-1]):  # traced before the timing, as a job would be
        model.predict_on_batch(shape_seen)
    return lambda: [np.asarray(model.predict_on_batch(s)) for s in slices]


def lakecast_path(source: Source, record: Any, batch_size: int) -> Any:
    from lakecast.scoring.batch import score_frame
    from lakecast.scoring.cache import ModelPayload

    payload = ModelPayload.from_version(record)
    return score_frame(source.frame, payload, out_columns=["event_id"], batch_size=batch_size)


def direct_path(source: Source, record: Any, batch_size: int) -> Any:
    """What ``score_batch`` runs by default: the workers read the files, Spark distributes."""
    from lakecast.scoring.batch import ModelScoring
    from lakecast.scoring.cache import ModelPayload

    payload = ModelPayload.from_version(record)
    scoring = ModelScoring.build(
        source.spark, payload, out_columns=["event_id"], batch_size=batch_size
    )
    return _direct(source, scoring)


def _direct(source: Source, scoring: Any) -> Any:
    from lakecast.lake.delta import table_version
    from lakecast.scoring.direct import plan_direct_scan, score_direct

    version = table_version(source.spark, source.path)
    scan = plan_direct_scan(source.spark, source.path, version)
    return score_direct(source.spark, scan, scoring, source.frame.schema)


def _no_model(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The matrix built as lakecast builds it, then zeros for scores: the I/O floor's scorer."""
    from lakecast.scoring.batch import matrix_of

    matrix = matrix_of(batch, FEATURE_COLUMNS, np.float64)
    scores = pa.array(np.zeros(matrix.shape[0]))
    return pa.RecordBatch.from_arrays([batch.column("event_id"), scores], ["event_id", "score"])


@dataclass(frozen=True)
class NoModelScoring:
    """A BatchScoring (lakecast.scoring.batch) that reads and builds the matrix, no model."""

    batch_size: int
    passed_columns: tuple[str, ...] = ("event_id",)
    feature_columns: tuple[str, ...] = tuple(FEATURE_COLUMNS)
    float32_features: bool = False

    def output_schema(self, source: Any) -> Any:
        from pyspark.sql.types import DoubleType, StringType, StructField, StructType

        return StructType(
            [StructField("event_id", StringType()), StructField("score", DoubleType())]
        )

    def scorer(self) -> Callable[[pa.RecordBatch], pa.RecordBatch]:
        return _no_model


def io_floor_path(source: Source, record: Any, batch_size: int) -> Any:
    """The same read, Arrow transfer and matrix build as lakecast, with no model: the ceiling
    of any scoring path that reads through Spark on this data."""
    from lakecast.scoring.batch import on_frame

    return on_frame(source.frame, NoModelScoring(batch_size))


def direct_floor_path(source: Source, record: Any, batch_size: int) -> Any:
    """The direct read's files and matrix build with no model: the direct read's ceiling."""
    return _direct(source, NoModelScoring(batch_size))


def _predict_fn_factory(artifact: str, flavor: str) -> Callable[[], Callable[..., np.ndarray]]:
    """``make_predict_fn`` for predict_batch_udf: load the model once per worker, as its docs do."""

    def make() -> Callable[..., np.ndarray]:
        if flavor == "sklearn":
            import skops.io

            model = skops.io.load(artifact, trusted=skops.io.get_untrusted_types(file=artifact))
            return lambda x: model.predict_proba(x)[:, 1]
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
        import keras

        net = keras.saving.load_model(artifact, safe_mode=True, compile=False)
        return lambda x: net.predict_on_batch(x.astype(np.float32)).reshape(-1)

    return make


def predict_batch_path(source: Source, record: Any, batch_size: int) -> Any:
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType

    udf = predict_batch_udf(
        _predict_fn_factory(record.artifact_path, record.flavor),
        return_type=DoubleType(),
        batch_size=batch_size,
    )
    return source.frame.select("event_id", udf(F.struct(*FEATURE_COLUMNS)).alias("score"))


_ROW_MODELS: dict[str, Any] = {}


def row_udf_path(frame: Any, record: Any) -> Any:
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType

    load = _predict_fn_factory(record.artifact_path, record.flavor)
    key = record.sha256

    def score(*values: float) -> float:
        predict = _ROW_MODELS.get(key)
        if predict is None:
            predict = _ROW_MODELS[key] = load()
        return float(predict(np.array([values], dtype=np.float64))[0])

    udf = F.udf(score, DoubleType())
    return frame.select("event_id", udf(*FEATURE_COLUMNS).alias("score"))


def run_spark(frame: Any) -> None:
    frame.write.format("noop").mode("overwrite").save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--row-udf-rows", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    from lakecast.spark import get_spark

    root = Path(tempfile.mkdtemp(prefix="lakecast-bench-"))
    try:
        data = root / "features"
        print(f"writing {args.rows:,} synthetic feature rows ({len(FEATURE_COLUMNS)} columns)")
        write_features(data, args.rows, args.seed)
        # Small, in several files, so that every core's Python worker starts and loads the model.
        write_features(root / "warm", 32_000, args.seed + 99, file_rows=2_000)
        matrix = read_matrix(data)
        trained = train_models(root, args.seed)
        optimized = optimize_models(root, trained)
        spark = get_spark(
            "lakecast-bench",
            master="local[*]",
            conf={
                "spark.ui.enabled": "false",
                "spark.sql.execution.arrow.maxRecordsPerBatch": str(args.batch_size),
                "spark.sql.files.maxPartitionBytes": str(64 << 20),
            },
        )
        spark.sparkContext.setLogLevel("ERROR")
        full, warm = Source(spark, str(data)), Source(spark, str(root / "warm"))
        sample = full.frame.limit(args.row_udf_rows)
        full.frame.limit(1).collect()  # Delta's log of the table loaded before any timing
        cores = spark.sparkContext.defaultParallelism
        print(f"Spark local[*], {cores} cores; batch size {args.batch_size}\n")
        results: list[Row] = []
        optimized_results: list[OptimizedRow] = []
        for flavor, (record, model) in trained.items():
            limit = timed(in_process(flavor, model, matrix, args.batch_size))
            results.append((flavor, "in-process predict (limit)", *limit.rates(args.rows), ""))
            if flavor == "keras":  # predict() builds a tf.data pipeline; this call does not
                on_batch = timed(keras_on_batch(model, matrix))
                note = "reference: Keras's lower-level call"
                results.append(
                    (flavor, "in-process predict_on_batch", *on_batch.rates(args.rows), note)
                )
            paths: list[tuple[str, Callable[[Source, Any, int], Any]]] = [
                ("Spark I/O floor (no model)", io_floor_path),
                ("direct I/O floor (no model)", direct_floor_path),
                ("lakecast mapInArrow", lakecast_path),
                ("lakecast direct read", direct_path),
                ("predict_batch_udf", predict_batch_path),
            ]
            for label, path in paths:
                run_spark(path(warm, record, args.batch_size))
                run = timed(lambda p=path, r=record: run_spark(p(full, r, args.batch_size)))
                results.append((flavor, label, *run.rates(args.rows), ""))
            run_spark(row_udf_path(warm.frame.sample(fraction=0.03, seed=2), record))
            run = timed(lambda r=record: run_spark(row_udf_path(sample, r)))
            note = f"extrapolated from {args.row_udf_rows:,} rows"
            results.append(
                (flavor, "row-at-a-time Python UDF", *run.rates(args.row_udf_rows), note)
            )
            source_limit = next(
                r[2] for r in results if r[0] == flavor and r[1] == SOURCE_LIMITS[flavor]
            )
            sliced = timed(source_on_slices(flavor, model, matrix, args.batch_size))
            label = f"in-process, {args.batch_size:,}-row calls"
            results.append((flavor, label, *sliced.rates(args.rows), "a batch path's calls"))
            for kind, version in optimized[flavor]:
                optimized_results += optimized_rows(
                    (full, warm), flavor, kind, version, model, matrix, args.batch_size,
                    (source_limit, results[-1][2]),
                )  # fmt: skip
        print_table(results, args.rows)
        print_optimized(optimized_results)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# (flavor, method, rows/s, rows per CPU-second, note)
Row = tuple[str, str, float, float, str]
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
    whole = onnx_in_process(record, matrix, threads=1)
    session, feed, ready = whole.session, whole.feed, whole.ready
    slices = [ready[i : i + rows] for i in range(0, len(ready), rows)]
    return lambda: [session.run(None, {feed: s}) for s in slices]


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
    scores = np.asarray(single()[0]).reshape(-1)
    note = parity(source_scores(flavor, model, matrix), scores)
    runs: list[tuple[str, Callable[[], Any]]] = [
        ("in-process session, 1 thread", single),
        ("in-process session, all cores", onnx_in_process(record, matrix, threads=os.cpu_count())),
        (f"in-process, {batch_size:,}-row calls", onnx_on_slices(record, matrix, batch_size)),
    ]
    for label, run in runs:
        rate, per_cpu = timed(run).rates(rows)
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


def print_table(results: list[Row], rows: int) -> None:
    print(
        f"{'flavor':<8} {'method':<28} {'rows/s':>12} {'vs limit':>9} {'vs pbudf':>9} "
        f"{'rows/cpu-s':>11}  note"
    )
    for flavor in dict.fromkeys(r[0] for r in results):
        mine = [r for r in results if r[0] == flavor]
        limit = next(r[2] for r in mine if r[1].startswith("in-process"))
        pbudf = next(r[2] for r in mine if r[1] == "predict_batch_udf")
        for _, method, rate, per_cpu, note in mine:
            print(
                f"{flavor:<8} {method:<28} {rate:>12,.0f} {rate / limit:>9.2f} "
                f"{rate / pbudf:>9.2f} {per_cpu:>11,.0f}  {note}"
            )
        seconds = {method.split(" (")[0]: rows / rate for _, method, rate, _, _ in mine}
        print(f"{'':<8} (time for {rows:,} rows: " + ", ".join(
            f"{m} {s:.1f}s" for m, s in seconds.items()) + ")")  # fmt: skip
    print()


if __name__ == "__main__":
    main()
