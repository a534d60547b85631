"""Direct read: the Python workers read the features table's Parquet files themselves.

Spark's own read of a Delta table ships every feature column from the JVM to Python as Arrow
(:func:`lakecast.scoring.batch.on_frame`); with ~50 float columns that transfer, not the model,
bounds the throughput. Here Spark still distributes the work, but over a tiny DataFrame: the
driver lists the table version's data files (delta-rs reads the log), splits big files into
byte ranges, packs the splits into about two tasks per core, and ``mapInArrow`` over one row
per task hands each Python worker its splits. The worker reads only the columns scoring needs
with pyarrow, a bounded number of rows at a time, adds the partition columns from the log's
partition values, and feeds the batches to the same :class:`~lakecast.scoring.batch.BatchScoring`
as the Spark read. Only the scored rows (keys, passthrough columns, score) go back to the JVM.

The direct read is only used where it reads exactly what Spark would: a table on a local (or
mounted) file system whose protocol needs no reader feature this module does not implement.
Deletion vectors (rows deleted without rewriting their file) and column mapping (physical
column names differing from the schema's) are not implemented: :func:`choose_read` falls back
to Spark's read for such tables, and for change-data-feed (``--incremental``) reads.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlparse

import pyarrow as pa

from lakecast.errors import ScoringError

if TYPE_CHECKING:
    import pyarrow.parquet as pq
    from pyspark.broadcast import Broadcast
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

    from lakecast.scoring.batch import ArrowMapper, BatchScorer, BatchScoring

log = logging.getLogger(__name__)

ReadMode = Literal["auto", "spark", "direct"]
READ_MODES: tuple[ReadMode, ...] = ("auto", "spark", "direct")

# Reader features whose tables this module reads exactly as Spark does. timestampNtz only
# allows a column type (pyarrow reads it as a naive timestamp, as Spark hands it over);
# vacuumProtocolCheck only constrains VACUUM. Anything else (deletionVectors, columnMapping,
# typeWidening, variantType, v2Checkpoint, ...) means: let Spark read the table.
HANDLED_READER_FEATURES = frozenset({"timestampNtz", "vacuumProtocolCheck"})
MAX_READER_VERSION = 3
LOCAL_SCHEMES = ("", "file")
# A file bigger than a split is read by several tasks, each taking the row groups whose middle
# byte falls in its range (as Parquet input splits work); Spark's read splits at the same size.
MAX_SPLIT_BYTES = 128 << 20
MIN_SPLIT_BYTES = 4 << 20
TASKS_PER_CORE = 2


class DirectReadUnavailable(ScoringError):
    """The table (or the request) cannot be read directly; the message says why."""


@dataclass(frozen=True)
class FileSplit:
    """One unit of a direct read: a data file, or split ``index`` of ``splits`` of a big one."""

    uri: str
    size: int
    partition_values: tuple[Any, ...] = ()  # in the order of DirectScan.partition_columns
    index: int = 0
    splits: int = 1

    def row_groups(self, metadata: pq.FileMetaData) -> list[int]:
        """The row groups of the file this split reads: those whose middle byte is in its range.

        Every row group belongs to exactly one split of the file (the first and last splits
        also take any row group outside ``[0, size)``, should the recorded size be off).
        """
        if self.splits == 1:
            return list(range(metadata.num_row_groups))
        low = self.index * self.size // self.splits
        high = (self.index + 1) * self.size // self.splits
        chosen = []
        for group in range(metadata.num_row_groups):
            middle = _row_group_middle(metadata.row_group(group))
            after_low = self.index == 0 or middle >= low
            before_high = self.index == self.splits - 1 or middle < high
            if after_low and before_high:
                chosen.append(group)
        return chosen


def _row_group_middle(group: pq.RowGroupMetaData) -> int:
    start = None
    compressed = 0
    for index in range(group.num_columns):
        chunk = group.column(index)
        first = chunk.data_page_offset
        if chunk.has_dictionary_page and chunk.dictionary_page_offset:
            first = min(first, chunk.dictionary_page_offset)
        start = first if start is None else min(start, first)
        compressed += chunk.total_compressed_size
    return (start or 0) + compressed // 2


@dataclass(frozen=True)
class DirectScan:
    """The data files of one version of a Delta table, packed into the tasks that read them."""

    table: str
    version: int
    partition_columns: tuple[str, ...]
    tasks: tuple[tuple[FileSplit, ...], ...]

    @property
    def files(self) -> int:
        return len({split.uri for task in self.tasks for split in task})

    @property
    def splits(self) -> int:
        return sum(len(task) for task in self.tasks)

    def describe(self) -> str:
        return f"{self.files} files in {self.splits} splits over {len(self.tasks)} tasks"


@dataclass(frozen=True)
class ReadChoice:
    """How a run reads the features: ``spark`` or ``direct`` (with its scan), and why."""

    path: Literal["spark", "direct"]
    reason: str
    scan: DirectScan | None = None


def choose_read(
    spark: SparkSession,
    mode: str,
    features_path: str,
    version: int,
    *,
    change_feed: bool = False,
) -> ReadChoice:
    """Pick the read of ``features_path`` at ``version``: ``auto`` reads directly where that
    is safe (see the module docstring) and through Spark otherwise.

    Args:
        mode: ``auto``, ``spark`` or ``direct``.
        change_feed: the run reads the change data feed (an incremental run after an earlier
            one), which only Spark reads.

    Raises:
        ScoringError: an unknown mode, or ``direct`` asked for where it cannot be used.
    """
    if mode not in READ_MODES:
        msg = f"score_batch: --read must be one of {list(READ_MODES)}, got {mode!r}"
        raise ScoringError(msg)
    if mode == "spark":
        return ReadChoice("spark", "asked for (--read spark)")
    try:
        if change_feed:
            msg = "an incremental run reads the change data feed"
            raise DirectReadUnavailable(msg)
        scan = plan_direct_scan(spark, features_path, version)
    except DirectReadUnavailable as exc:
        if mode == "direct":
            msg = (
                f"score_batch --read direct: cannot read {features_path} v{version} directly: "
                f"{exc} (nothing was scored; use --read auto or --read spark)"
            )
            raise ScoringError(msg) from exc
        return ReadChoice("spark", f"fell back to Spark's read: {exc}")
    how = "asked for (--read direct)" if mode == "direct" else "auto"
    return ReadChoice("direct", f"{how}: {scan.describe()}", scan)


def _local_path(path: str) -> str:
    parsed = urlparse(path)
    # A one-letter scheme is a Windows drive letter, not a URI scheme.
    if len(parsed.scheme) > 1 and parsed.scheme not in LOCAL_SCHEMES:
        msg = (
            f"{parsed.scheme}: URIs are read by Spark (its Hadoop file system settings and "
            "credentials apply); only local or mounted paths are read directly"
        )
        raise DirectReadUnavailable(msg)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            msg = f"file URI {path!r} names a host"
            raise DirectReadUnavailable(msg)
        return unquote(parsed.path)
    # Absolute: an executor's working directory is not the driver's.
    return os.path.abspath(path)


def _check_protocol(table: Any) -> None:
    protocol = table.protocol()
    if protocol.min_reader_version > MAX_READER_VERSION:
        msg = f"reader version {protocol.min_reader_version} is not implemented"
        raise DirectReadUnavailable(msg)
    unhandled = sorted(set(protocol.reader_features or ()) - HANDLED_READER_FEATURES)
    if unhandled:
        msg = f"the table's protocol needs reader features {unhandled}"
        raise DirectReadUnavailable(msg)
    mapping = table.metadata().configuration.get("delta.columnMapping.mode", "none")
    if mapping not in (None, "none"):
        msg = f"the table uses column mapping (mode {mapping!r})"
        raise DirectReadUnavailable(msg)


def plan_direct_scan(
    spark: SparkSession,
    features_path: str,
    version: int,
    *,
    parallelism: int | None = None,
) -> DirectScan:
    """The data files of ``features_path`` at ``version``, split and packed into tasks.

    Files are split at ``min(128 MiB, max(4 MiB, total bytes / cores))`` and the splits are
    packed, biggest first, into about two tasks per core of ``parallelism`` (the context's
    default parallelism).

    Raises:
        DirectReadUnavailable: the path is not local, delta-rs cannot load that version, or the
            protocol needs a reader feature not implemented here (see the module docstring).
    """
    from deltalake import DeltaTable

    location = _local_path(features_path)
    try:
        table = DeltaTable(location, version=version)
    except Exception as exc:  # delta-rs raises several types (TableNotFound, version, protocol)
        msg = f"delta-rs cannot load version {version}: {exc}"
        raise DirectReadUnavailable(msg) from exc
    if table.version() != version:
        msg = f"delta-rs loaded version {table.version()}, not {version}"
        raise DirectReadUnavailable(msg)
    _check_protocol(table)
    partition_columns = tuple(table.metadata().partition_columns)
    actions = pa.table(table.get_add_actions(flatten=False))
    uris = table.file_uris()
    paths = actions.column("path").to_pylist()
    # The log holds relative paths, URI-escaped; delta-rs's file list is the unescaped local
    # paths in the same order. Anything else (an absolute path, a URI: a shallow clone's
    # files) is left to Spark.
    if len(uris) != len(paths) or any(
        "://" in uri or not uri.endswith(unquote(path))
        for uri, path in zip(uris, paths, strict=True)
    ):
        msg = "its data files are not all local files under the table"
        raise DirectReadUnavailable(msg)
    sizes = actions.column("size_bytes").to_pylist()
    values: list[tuple[Any, ...]] = [()] * len(paths)
    if partition_columns:
        partition = actions.column("partition").combine_chunks()
        columns = [partition.field(name).to_pylist() for name in partition_columns]
        values = list(zip(*columns, strict=True))
    cores = parallelism or spark.sparkContext.defaultParallelism
    split_bytes = min(MAX_SPLIT_BYTES, max(MIN_SPLIT_BYTES, math.ceil(sum(sizes) / cores)))
    splits = [
        FileSplit(uri, size, value, index, count)
        for uri, size, value in zip(uris, sizes, values, strict=True)
        for count in [max(1, math.ceil(size / split_bytes))]
        for index in range(count)
    ]
    return DirectScan(
        table=features_path,
        version=version,
        partition_columns=partition_columns,
        tasks=_pack(splits, min(len(splits), TASKS_PER_CORE * cores)),
    )


def _pack(splits: Sequence[FileSplit], tasks: int) -> tuple[tuple[FileSplit, ...], ...]:
    """``splits`` in ``tasks`` groups of about equal bytes (biggest first, to the lightest)."""
    if not tasks:
        return ()
    groups: list[list[FileSplit]] = [[] for _ in range(tasks)]
    loads = [0] * tasks
    for split in sorted(splits, key=lambda s: s.size / s.splits, reverse=True):
        lightest = loads.index(min(loads))
        groups[lightest].append(split)
        loads[lightest] += split.size // split.splits
    return tuple(tuple(group) for group in groups)


@dataclass(frozen=True)
class SplitReader:
    """Reads a split's rows as Arrow batches of the schema Spark's read would give them."""

    schema: pa.Schema  # the columns to read, typed as Spark hands them to Python
    partition_columns: tuple[str, ...]
    batch_size: int

    def read(self, split: FileSplit) -> Iterator[pa.RecordBatch]:
        """``split``'s rows, at most ``batch_size`` at a time (one row group in memory)."""
        import pyarrow.fs as pafs
        import pyarrow.parquet as pq

        # A local path, not a URI: a partition directory's name may hold '%' escapes.
        with pafs.LocalFileSystem().open_input_file(split.uri) as source:
            parquet = pq.ParquetFile(source, coerce_int96_timestamp_unit="us")
            groups = split.row_groups(parquet.metadata)
            if not groups:
                return
            present = set(parquet.schema_arrow.names)
            columns = [
                name
                for name in self.schema.names
                if name in present and name not in self.partition_columns
            ]
            # One thread per task: Spark gave this task one core.
            batches = parquet.iter_batches(
                batch_size=self.batch_size, row_groups=groups, columns=columns, use_threads=False
            )
            for batch in batches:
                yield self.conform(batch, split.partition_values)

    def conform(self, batch: pa.RecordBatch, partition_values: Sequence[Any]) -> pa.RecordBatch:
        """``batch`` with the partition columns added, absent columns null, types as Spark's."""
        rows = batch.num_rows
        partitions = dict(zip(self.partition_columns, partition_values, strict=True))
        present = set(batch.schema.names)
        arrays = []
        for field in self.schema:
            if field.name in partitions:
                value = pa.scalar(partitions[field.name]).cast(field.type)
                arrays.append(pa.repeat(value, rows))
            elif field.name in present:
                column = batch.column(field.name)
                # Spark writes timestamps as INT96 (read here as naive UTC): only the label
                # changes; other types cast as Spark's reader would widen them.
                arrays.append(column if column.type == field.type else column.cast(field.type))
            else:  # a column added to the table after this file was written
                arrays.append(pa.nulls(rows, field.type))
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)


def split_reader(
    spark: SparkSession, scan: DirectScan, table_schema: StructType, scoring: BatchScoring
) -> SplitReader:
    """The reader of the columns ``scoring`` needs, typed as Spark's Arrow transfer types them."""
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import StructType

    by_name = {f.name: f for f in table_schema.fields}
    names = dict.fromkeys([*scoring.passed_columns, *scoring.feature_columns])
    large = spark.conf.get("spark.sql.execution.arrow.useLargeVarTypes", "false") == "true"
    schema = to_arrow_schema(
        StructType([by_name[name] for name in names]),
        timezone=spark.conf.get("spark.sql.session.timeZone"),
        prefers_large_types=large,
    )
    return SplitReader(schema, scan.partition_columns, scoring.batch_size)


def score_direct(
    spark: SparkSession, scan: DirectScan, scoring: BatchScoring, table_schema: StructType
) -> DataFrame:
    """The table's rows scored by ``scoring``, each task reading its own splits.

    ``table_schema`` is the table's schema at the scan's version (Spark's, e.g. that of
    ``spark.read.format("delta").option("versionAsOf", v).load(path)``): the result has the
    same schema as :func:`~lakecast.scoring.batch.on_frame` over that frame gives. Nothing runs
    until an action.
    """
    schema = scoring.output_schema(table_schema)
    if not scan.tasks:
        return spark.createDataFrame([], schema)
    reader = split_reader(spark, scan, table_schema, scoring)
    shared = spark.sparkContext.broadcast(scan.tasks)
    tasks = spark.range(0, len(scan.tasks), 1, numPartitions=len(scan.tasks))
    return tasks.mapInArrow(_task_mapper(shared, reader, scoring), schema)


Tasks = tuple[tuple[FileSplit, ...], ...]


def _task_mapper(
    shared: Broadcast[Tasks], reader: SplitReader, scoring: BatchScoring
) -> ArrowMapper:
    """``mapInArrow``'s function over the task ids: read each task's splits, score them."""

    def apply(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        score: BatchScorer | None = None
        for ids in batches:
            for task in ids.column(0).to_pylist():
                for split in shared.value[task]:
                    for batch in reader.read(split):
                        if score is None:
                            score = scoring.scorer()
                        yield score(batch)

    return apply
