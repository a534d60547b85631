"""The data, models, timing and scoring paths of benchmarks/batch_scoring.py: each path
returns a DataFrame that benchmarks/batch_scoring.py writes to Spark's ``noop`` sink."""

from __future__ import annotations

import os
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
    """The table's features as the models' signature reads them (float32 values)."""
    from deltalake import DeltaTable

    from lakecast.models.predictor import read_as_signature
    from lakecast.models.training_run import model_signature

    table = DeltaTable(str(path)).to_pyarrow_dataset().to_table(columns=list(FEATURE_COLUMNS))
    matrix = np.column_stack([table.column(c).to_numpy() for c in FEATURE_COLUMNS])
    return read_as_signature(np.ascontiguousarray(matrix), model_signature(), copy=False)


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


def best_of(action: Callable[[], Any], runs: int = 3) -> Timing:
    """An in-process call's fastest of ``runs`` timings after one warm-up call: first-touch
    page faults, ONNX Runtime's arena and Keras's traces are paid once, as by a service whose
    calls repeat (one cold call made the same predictor look 4x slower)."""
    action()
    return min((timed(action) for _ in range(runs)), key=lambda timing: timing.wall)


def train_models(root: Path, seed: int) -> dict[str, Any]:
    """Both flavors, trained on 200k synthetic rows and registered; name -> (record, model)."""
    from lakecast.models.predictor import read_as_signature
    from lakecast.models.training import GradientBoostingRecipe, MlpRecipe
    from lakecast.models.training_run import model_signature
    from lakecast.registry import Registry

    x, y = synthetic_feature_matrix(200_000, seed + 1000)
    x = read_as_signature(x, model_signature(), copy=False)  # as jobs/train.py trains
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
    from lakecast.scoring.plan import SingleModel, score_frame

    plan = SingleModel.of(record)
    return score_frame(source.frame, plan, out_columns=["event_id"], batch_size=batch_size)


def direct_path(source: Source, record: Any, batch_size: int) -> Any:
    """What ``score_batch`` runs by default: the workers read the files, Spark distributes."""
    from lakecast.scoring.plan import PlanScoring, SingleModel

    plan = SingleModel.of(record)
    scoring = PlanScoring.build(source.spark, plan, out_columns=["event_id"], batch_size=batch_size)
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
