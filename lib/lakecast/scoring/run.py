"""One batch-scoring run: resolve the model, check the input, score, MERGE into ``predictions``.

Everything that can be refused is refused before a task runs: an unknown model, alias or
version, an artifact whose sha256 differs from the registry's, missing or mistyped feature
columns. Scoring then runs once into a local checkpoint (so a model that refuses a batch fails
the job before anything is written, and the NaN counter counts each row once), and the scores
go into ``predictions`` in a single MERGE commit. No outcome leaves a partial write.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from lakecast.errors import LakecastError, SchemaError, ScoringError
from lakecast.scoring.batch import DEFAULT_BATCH_SIZE, new_counters, score_frame
from lakecast.scoring.cache import ModelPayload
from lakecast.scoring.checks import check_feature_columns
from lakecast.scoring.incremental import changed_rows, last_scored_features_version
from lakecast.scoring.writer import ScoringRun, merge_predictions, with_run_columns

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

ARROW_BATCH_CONF = "spark.sql.execution.arrow.maxRecordsPerBatch"


@dataclass(frozen=True)
class ScoringRequest:
    """What ``jobs/score_batch.py`` asks for."""

    model: str  # NAME@ALIAS, NAME:VERSION or NAME (the latest)
    features_path: str
    predictions_path: str
    registry_root: str
    features_table_version: int | None = None
    incremental: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    run_id: str | None = None
    key_columns: tuple[str, ...] = ("event_id",)
    passthrough_columns: tuple[str, ...] = ("user_id", "ts")


@dataclass(frozen=True)
class ScoringSummary:
    """What a run did; the job prints it as JSON."""

    run_id: str
    model_name: str
    model_version: str
    model_sha256: str
    features_table_version: int
    incremental: bool
    since_features_version: int | None
    rows_scored: int
    nonfinite_rows: int
    predictions_table_version: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextmanager
def _session_conf(spark: SparkSession, key: str, value: str) -> Iterator[None]:
    previous = spark.conf.get(key, None)
    spark.conf.set(key, value)
    try:
        yield
    finally:
        if previous is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, previous)


def score_batch(spark: SparkSession, request: ScoringRequest) -> ScoringSummary:
    """Score the features table with a registered model and MERGE into ``predictions``.

    Raises:
        ModelNotFoundError: unknown model, alias or version.
        ModelIntegrityError: the artifact does not match its recorded sha256.
        SchemaError: no features table, or feature columns missing or mistyped.
        ScoringError: a task failed (e.g. the NaN policy ``error`` refused a batch), or the
            change data feed cannot be read for an incremental run.
    """
    from lakecast.lake.delta import is_delta_table, table_version
    from lakecast.registry import Registry

    if request.batch_size < 1:
        msg = f"score_batch: --batch-size must be >= 1, got {request.batch_size}"
        raise ScoringError(msg)
    record = Registry(request.registry_root).resolve(request.model)
    payload = ModelPayload.from_version(record)
    if not is_delta_table(spark, request.features_path):
        msg = f"score_batch: no Delta features table at {request.features_path!r}"
        raise SchemaError(msg)
    version = request.features_table_version
    if version is None:
        version = table_version(spark, request.features_path)
    frame = spark.read.format("delta").option("versionAsOf", version).load(request.features_path)
    where = f"score {record.ref} on {request.features_path} v{version}"
    check_feature_columns(
        frame.schema,
        record.signature,
        where,
        required=[*request.key_columns, *request.passthrough_columns],
    )
    since = None
    if request.incremental:
        since = last_scored_features_version(
            spark, request.predictions_path, record.name, record.version
        )
        if since is not None:
            frame = changed_rows(spark, request.features_path, since, version, request.key_columns)
    run = ScoringRun(
        run_id=request.run_id or uuid.uuid4().hex,
        model_name=record.name,
        model_version=record.version,
        model_sha256=record.sha256,
        features_path=request.features_path,
        features_table_version=version,
        incremental=request.incremental,
        since_features_version=since,
    )
    counters = new_counters(frame)
    out_columns = [*request.key_columns, *request.passthrough_columns]
    scored = score_frame(
        frame,
        payload,
        out_columns=out_columns,
        batch_size=request.batch_size,
        counters=counters,
    )
    with _session_conf(spark, ARROW_BATCH_CONF, str(request.batch_size)):
        try:
            materialized = scored.localCheckpoint(eager=True)
        except LakecastError:
            raise
        except Exception as exc:  # a task failed: PythonException / Py4JJavaError
            msg = f"{where}: scoring failed, nothing was written: {_first_line(exc)}"
            raise ScoringError(msg) from exc
    rows = materialized.count()
    written = None
    if rows:
        written = merge_predictions(
            with_run_columns(materialized, run),
            request.predictions_path,
            request.key_columns,
            run,
            {"rows": rows, "nonfinite_rows": int(counters.nonfinite_rows.value)},
        )
    return ScoringSummary(
        run_id=run.run_id,
        model_name=record.name,
        model_version=record.version,
        model_sha256=record.sha256,
        features_table_version=version,
        incremental=request.incremental,
        since_features_version=since,
        rows_scored=rows,
        nonfinite_rows=int(counters.nonfinite_rows.value),
        predictions_table_version=written,
    )


def _first_line(exc: BaseException) -> str:
    """The worker's own error line out of Spark's long wrapped message, when there is one."""
    text = str(exc)
    for line in text.splitlines():
        if "Error:" in line and "lakecast" in line:
            return line.strip()
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("lakecast.errors.", "DataError", "SchemaError")):
            return stripped
    return text.splitlines()[0] if text else type(exc).__name__
