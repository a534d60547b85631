"""The drift and skew job's steps (``jobs/feature_drift.py``): read, compare, write.

The live side is the served-feature archive (``archive/served_features``) for one model
version and a window of serving time. The reference is the training set of that version, as
its lineage records it (features table and Delta version, the training dates without the
holdout; an optimised version's lineage names its source, whose training set it is). The
results go to ``monitoring/feature_drift`` (one row per feature), ``monitoring/feature_skew``
(one row per event and feature apart) and the ``metrics`` topic (``kind=drift``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from lakecast.config import DriftSettings
from lakecast.errors import DataError
from lakecast.features.spec import FEATURE_COLUMNS
from lakecast.monitoring.drift.skew import SkewReport, feature_skew
from lakecast.monitoring.drift.statistics import FeatureDrift, compare_features

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from lakecast.config import KafkaSettings
    from lakecast.registry import ModelVersion, Registry

DRIFT_KIND = "drift"
DRIFT_SOURCE = "feature-drift"
# Optimised versions chain back to a trained one; a longer chain is a broken registry.
MAX_LINEAGE_HOPS = 5


@dataclass(frozen=True)
class DriftRequest:
    """One run: which version, which window of serving time, where to read and write."""

    model: str  # NAME@ALIAS, NAME:VERSION or NAME
    registry_root: str
    served_features: str  # the archive table
    drift_table: str
    start: dt.datetime
    end: dt.datetime
    features_table: str | None = None  # for skew; None skips it
    skew_table: str | None = None


@dataclass(frozen=True)
class TrainingReference:
    """Where a version's training rows are."""

    table: str
    table_version: int
    train_from: dt.date | None
    train_to: dt.date | None
    trained_version: str  # the version whose lineage named it


@dataclass(frozen=True)
class DriftOutcome:
    run_id: str
    model: str
    version: str
    reference: TrainingReference
    rows: int
    drift: list[FeatureDrift]
    skew: SkewReport | None

    def summary(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "model": self.model,
            "version": self.version,
            "training_table": self.reference.table,
            "training_table_version": self.reference.table_version,
            "rows": self.rows,
            "drifted": [d.feature for d in self.drift if d.drifted],
            "features": {d.feature: {"psi": d.psi, "ks": d.ks} for d in self.drift},
            "skew": None if self.skew is None else self.skew.summary(),
        }


def training_reference(registry: Registry, version: ModelVersion) -> TrainingReference:
    """The training set of ``version`` from the registry's lineage.

    Raises:
        DataError: no version in the chain records a training table.
    """
    current = version
    for _ in range(MAX_LINEAGE_HOPS):
        lineage = current.lineage
        if lineage.training_table is not None and lineage.training_table_version is not None:
            holdout = lineage.holdout
            return TrainingReference(
                table=lineage.training_table,
                table_version=int(lineage.training_table_version),
                train_from=_date(holdout.get("train_from")),
                train_to=_date(holdout.get("train_to")),
                trained_version=current.version,
            )
        if lineage.optimized_from is None:
            break
        current = registry.resolve(lineage.optimized_from)
    msg = (
        f"drift: model {version.ref} has no training table in its lineage (nor a version it "
        "was optimised from): register it with Lineage(training_table=..., "
        "training_table_version=...)"
    )
    raise DataError(msg)


def _date(value: object) -> dt.date | None:
    return dt.date.fromisoformat(str(value)) if value else None


def read_reference(
    spark: SparkSession, reference: TrainingReference, limit: int
) -> dict[str, np.ndarray]:
    """The training rows' feature columns (at most ``limit`` rows, a seeded sample)."""
    from pyspark.sql import functions as F

    from lakecast.features.training_set import training_set

    frame = training_set(
        spark.read.format("delta")
        .option("versionAsOf", reference.table_version)
        .load(reference.table)
    )
    if reference.train_from and reference.train_to and "date" in frame.columns:
        frame = frame.where(F.col("date").between(reference.train_from, reference.train_to))
    frame = frame.select(*FEATURE_COLUMNS)
    total = frame.count()
    if total > limit:
        frame = frame.sample(fraction=min(1.0, 1.2 * limit / total), seed=7).limit(limit)
    table = frame.toArrow()
    return {name: _column(table, name) for name in FEATURE_COLUMNS}


def read_live(spark: SparkSession, request: DriftRequest, name: str, version: str) -> pa.Table:
    """The sampled vectors ``version`` served in the window: event_id + the feature columns."""
    from pyspark.sql import functions as F

    frame: DataFrame = spark.read.format("delta").load(request.served_features)
    frame = frame.where(
        (F.col("model_name") == name)
        & (F.col("model_version") == version)
        & (F.col("ts") >= F.lit(request.start))
        & (F.col("ts") < F.lit(request.end))
    )
    return frame.select(
        "event_id", *(F.col("features")[c].alias(c) for c in FEATURE_COLUMNS)
    ).toArrow()


def _column(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), np.float64)


def drift_rows(outcome: DriftOutcome, request: DriftRequest, now: dt.datetime) -> pa.Table:
    """``monitoring/feature_drift`` rows: one per feature."""
    rows = [
        {
            "run_id": outcome.run_id,
            "model_name": outcome.model,
            "model_version": outcome.version,
            "feature": d.feature,
            "psi": d.psi,
            "ks": d.ks,
            "psi_threshold": d.psi_threshold,
            "ks_threshold": d.ks_threshold,
            "drifted": d.drifted,
            "rows": d.rows,
            "reference_rows": d.reference_rows,
            "training_table": outcome.reference.table,
            "training_table_version": outcome.reference.table_version,
            "window_start": request.start,
            "window_end": request.end,
            "computed_at": now,
        }
        for d in outcome.drift
    ]
    return pa.Table.from_pylist(rows)


def drift_metric_fields(outcome: DriftOutcome, request: DriftRequest) -> list[dict[str, Any]]:
    """The fields of each ``kind=drift`` record (the contract), one per feature."""
    window = {"start": request.start.isoformat(), "end": request.end.isoformat()}
    return [
        {
            "model": outcome.model,
            "version": outcome.version,
            "feature": d.feature,
            "psi": d.psi,
            "ks": d.ks,
            "psi_threshold": d.psi_threshold,
            "ks_threshold": d.ks_threshold,
            "drifted": d.drifted,
            "rows": d.rows,
            "window": window,
        }
        for d in outcome.drift
    ]


def run_feature_drift(
    spark: SparkSession, request: DriftRequest, settings: DriftSettings
) -> DriftOutcome:
    """Compare, then append to the drift (and skew) tables; the outcome (metrics not sent).

    Raises:
        ModelNotFoundError: the model reference does not resolve.
        DataError: no training table in the lineage, or fewer than ``min_rows`` samples.
    """
    from lakecast.registry import Registry

    registry = Registry(request.registry_root)
    version = registry.resolve(request.model)
    reference = training_reference(registry, version)
    live = read_live(spark, request, version.name, version.version)
    if live.num_rows < settings.min_rows:
        msg = (
            f"drift: model {version.ref} has {live.num_rows} sampled vectors in "
            f"{request.served_features} between {request.start.isoformat()} and "
            f"{request.end.isoformat()}; drift.min_rows is {settings.min_rows}"
        )
        raise DataError(msg)
    drift = compare_features(
        read_reference(spark, reference, settings.reference_rows),
        {name: _column(live, name) for name in FEATURE_COLUMNS},
        psi_threshold=settings.psi_threshold,
        ks_threshold=settings.ks_threshold,
        bins=settings.bins,
    )
    skew = None
    if request.features_table is not None:
        from pyspark.sql import functions as F

        # The sample is small (a share of one window's events): a filter, not a join.
        batch = (
            spark.read.format("delta")
            .load(request.features_table)
            .where(F.col("event_id").isin(_ids(live)))
            .select("event_id", *FEATURE_COLUMNS)
            .toArrow()
        )
        skew = feature_skew(live, batch, tolerance=settings.skew_tolerance)
    outcome = DriftOutcome(
        uuid.uuid4().hex, version.name, version.version, reference, live.num_rows, drift, skew
    )
    now = dt.datetime.now(dt.UTC)
    _append(drift_rows(outcome, request, now), request.drift_table)
    if skew is not None and request.skew_table is not None and skew.differences.num_rows:
        extra = {"run_id": outcome.run_id, "model_name": version.name,
                 "model_version": version.version, "computed_at": now}  # fmt: skip
        table = skew.differences
        for column, value in extra.items():
            table = table.append_column(column, pa.array([value] * table.num_rows))
        _append(table, request.skew_table)
    return outcome


def _ids(live: pa.Table) -> list[str]:
    return sorted(set(live.column("event_id").to_pylist()))


def _append(table: pa.Table, path: str) -> None:
    # A run's results are a few dozen rows: delta-rs appends them in milliseconds, where a
    # Spark write (pandas -> JVM, a job, a Delta commit) took seconds on the loaded machine.
    from deltalake import write_deltalake

    write_deltalake(path, table, mode="append", schema_mode="merge")


def send_drift_metrics(
    kafka: KafkaSettings, topic: str, fields: list[dict[str, Any]], timeout_s: float = 30.0
) -> int:
    """Write the ``kind=drift`` records to the ``metrics`` topic; how many were acknowledged.

    Raises:
        StreamError: a record was not acknowledged within ``timeout_s``.
    """
    from kafka.errors import KafkaError

    from lakecast.errors import StreamError
    from lakecast.kafka.clients import build_producer
    from lakecast.kafka.serde import encode_key, encode_metric

    producer = build_producer(kafka, mode="at_least_once", client_id=DRIFT_SOURCE)
    try:
        now = dt.datetime.now(dt.UTC)
        futures = [
            producer.send(
                topic,
                key=encode_key(DRIFT_SOURCE),
                value=encode_metric(DRIFT_KIND, DRIFT_SOURCE, now, record),
            )
            for record in fields
        ]
        producer.flush(timeout=timeout_s)
        for future in futures:
            future.get(timeout=timeout_s)
    except KafkaError as exc:
        msg = f"drift: writing {len(fields)} kind=drift records to {topic!r}: {exc!r}"
        raise StreamError(msg) from exc
    finally:
        producer.close(timeout=10)
    return len(fields)
