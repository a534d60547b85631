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
  for reference: it is faster than the limit); every in-process row is the best of three
  calls after a warm-up call (``best_of``), the Spark rows one run after a warm-up run;
- Spark methods read the table, score, and write to Spark's ``noop`` sink (no output I/O), on
  ``local[*]``, each after one warm-up run on a small Delta table of the same schema in several
  files (workers started, models loaded);
- "lakecast direct read" is the path ``score_batch`` takes by default: Spark distributes the
  table's files, the Python workers read them with pyarrow, only keys and scores go back; its
  floor is the same read with no model;
- the row-at-a-time UDF runs on a subsample and is extrapolated (labelled as such);
- optimised kinds (``lakecast models optimize``'s converters: ``onnx`` for both flavors,
  ``onnx-fp32`` for the tree model, ``onnx-int8`` for Keras) registered as ``onnx``
  versions, each with its in-process ONNX Runtime rate (one session thread per Spark task is
  what lakecast runs; the limit row uses one thread too, and the default of all cores, on the
  whole matrix and in the 32,768-row slices the predictor runs; the predictor itself), both
  lakecast paths, and its parity (max and p99.9 |score diff| against the source over the
  whole matrix); "vs src" is the ratio to the source's in-process limit (sklearn
  ``predict_proba``, Keras ``predict_on_batch``).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batch_scoring_optimized import (
    SOURCE_LIMITS,
    OptimizedRow,
    compute_bound,
    optimize_models,
    optimized_rows,
    print_optimized,
    source_on_slices,
)
from batch_scoring_paths import (
    Source,
    best_of,
    direct_floor_path,
    direct_path,
    in_process,
    io_floor_path,
    keras_on_batch,
    lakecast_path,
    predict_batch_path,
    read_matrix,
    row_udf_path,
    run_spark,
    timed,
    train_models,
    write_features,
)

from lakecast.features.spec import FEATURE_COLUMNS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--row-udf-rows", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    import batch_scoring_optimized
    import batch_scoring_paths
    from pyspark import cloudpickle

    from lakecast.spark import get_spark

    # The paths' functions run in Spark's Python workers, which cannot import these script
    # modules: ship them by value, as a function of the script itself (__main__) is.
    for module in (batch_scoring_paths, batch_scoring_optimized):
        cloudpickle.register_pickle_by_value(module)

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
            limit = best_of(in_process(flavor, model, matrix, args.batch_size))
            results.append((flavor, "in-process predict (limit)", *limit.rates(args.rows), ""))
            if flavor == "keras":  # predict() builds a tf.data pipeline; this call does not
                on_batch = best_of(keras_on_batch(model, matrix))
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
            sliced = best_of(source_on_slices(flavor, model, matrix, args.batch_size))
            label = f"in-process, {args.batch_size:,}-row calls"
            results.append((flavor, label, *sliced.rates(args.rows), "a batch path's calls"))
            for kind, version in optimized[flavor]:
                optimized_results += optimized_rows(
                    (full, warm), flavor, kind, version, model, matrix, args.batch_size,
                    (source_limit, results[-1][2]),
                )  # fmt: skip
        print_table(results, args.rows)
        print_optimized(optimized_results)
        keras_limit = next(r[2] for r in results if r[:2] == ("keras", SOURCE_LIMITS["keras"]))
        print(compute_bound(trained["keras"][1], keras_limit))
    finally:
        shutil.rmtree(root, ignore_errors=True)


# (flavor, method, rows/s, rows per CPU-second, note)
Row = tuple[str, str, float, float, str]


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
