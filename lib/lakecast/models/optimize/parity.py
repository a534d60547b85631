"""The parity check of an optimised version: its scores against its source's, on the source's
holdout, and the gate that refuses a difference beyond the kind's tolerance.

The holdout is the one the source version was evaluated on, as its lineage names it: the
training table at its Delta version, the labelled rows of the holdout dates. It is read with
delta-rs, so no JVM starts.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np

from lakecast.errors import RegistryError
from lakecast.features.spec import LABEL_COLUMN
from lakecast.models.evaluation import HoldoutMetrics, evaluate
from lakecast.models.training import TrainingRows, training_rows

if TYPE_CHECKING:
    from lakecast.models.predictor import Predictor
    from lakecast.registry.records import ModelVersion

P999 = 0.999


class ParityError(RegistryError):
    """An optimised model scores too far from its source: it is not registered."""


def holdout_rows(source: ModelVersion) -> TrainingRows:
    """The labelled holdout rows ``source`` was evaluated on, ordered by (ts, event_id).

    Raises:
        ParityError: the lineage names no holdout, or the table has no rows for it.
    """
    return _lineage_rows(source, "holdout_from", "holdout_to", "holdout")


def training_rows_of(source: ModelVersion) -> TrainingRows | None:
    """The labelled rows ``source`` was trained on (None: its lineage names no training dates).

    A reduced-precision tree ensemble is checked on them too: a float32 branch flip needs a
    feature value within float32 rounding of a threshold, and the thresholds lie between
    training values, so the training rows are where flips show first.

    Raises:
        ParityError: the table has no rows for the dates the lineage names.
    """
    if not source.lineage.holdout.get("train_from"):
        return None
    return _lineage_rows(source, "train_from", "train_to", "training")


def _lineage_rows(source: ModelVersion, first_key: str, last_key: str, what: str) -> TrainingRows:
    import pyarrow.dataset as ds
    from deltalake import DeltaTable

    lineage = source.lineage
    dates = lineage.holdout
    first, last = dates.get(first_key), dates.get(last_key)
    if not lineage.training_table or lineage.training_table_version is None or not first:
        msg = (
            f"{source.ref}: its lineage names no {what} (training table, Delta version and "
            f"{what} dates, as jobs/train.py records them); parity cannot be checked"
        )
        raise ParityError(msg)
    table = DeltaTable(lineage.training_table, version=lineage.training_table_version)
    wanted = (
        (ds.field("date") >= date.fromisoformat(str(first)))
        & (ds.field("date") <= date.fromisoformat(str(last or first)))
        & ds.field(LABEL_COLUMN).is_valid()
    )
    inputs = source.signature.input_names
    columns = [*inputs, LABEL_COLUMN, "ts", "event_id", "date"]
    arrow = table.to_pyarrow_dataset().to_table(columns=columns, filter=wanted)
    if arrow.num_rows == 0:
        msg = (
            f"{source.ref}: no labelled rows in {lineage.training_table} "
            f"v{lineage.training_table_version} from {first} to {last}"
        )
        raise ParityError(msg)
    return training_rows(arrow, inputs, LABEL_COLUMN)


@dataclass(frozen=True)
class ParityReport:
    """How far the optimised scores are from the source's, and both versions' metrics."""

    kind: str
    tolerance: float
    rows: int
    max_abs_diff: float
    p999_abs_diff: float
    nan_mismatches: int  # rows NaN in one version's scores and not in the other's
    source: HoldoutMetrics
    optimized: HoldoutMetrics
    source_ms_per_1k: float
    optimized_ms_per_1k: float
    training: TrainingParity | None = None  # the training rows too (reduced-precision trees)

    @property
    def passed(self) -> bool:
        holdout = self.nan_mismatches == 0 and self.max_abs_diff <= self.tolerance
        return holdout and (self.training is None or self.training.within(self.tolerance))

    def describe(self) -> str:
        training = "" if self.training is None else f"; {self.training.describe()}"
        return (
            f"max |score diff| {self.max_abs_diff:.3g}, p99.9 {self.p999_abs_diff:.3g} over "
            f"{self.rows} holdout rows ({self.nan_mismatches} NaN mismatches){training}; "
            f"tolerance of {self.kind} {self.tolerance:g}"
        )

    def check(self, where: str) -> None:
        """The gate.

        Raises:
            ParityError: the difference exceeds the tolerance, or NaN rows differ.
        """
        if not self.passed:
            msg = f"{where}: refused, the optimised scores differ from the source's: " + (
                self.describe()
            )
            raise ParityError(msg)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "tolerance": self.tolerance,
            "holdout_rows": self.rows,
            "max_abs_diff": self.max_abs_diff,
            "p999_abs_diff": self.p999_abs_diff,
            "nan_mismatches": self.nan_mismatches,
            "source_ms_per_1k": self.source_ms_per_1k,
            "optimized_ms_per_1k": self.optimized_ms_per_1k,
            **({} if self.training is None else self.training.as_dict()),
        }


@dataclass(frozen=True)
class TrainingParity:
    """The difference over the rows the source was trained on."""

    rows: int
    max_abs_diff: float
    changed: int  # rows whose score moved by more than 1e-6
    nan_mismatches: int

    def within(self, tolerance: float) -> bool:
        return self.nan_mismatches == 0 and self.max_abs_diff <= tolerance

    def describe(self) -> str:
        return (
            f"max |score diff| {self.max_abs_diff:.3g} over {self.rows} training rows "
            f"({self.changed} moved by more than 1e-6, {self.nan_mismatches} NaN mismatches)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "training_rows": self.rows,
            "training_max_abs_diff": self.max_abs_diff,
            "training_rows_changed": self.changed,
            "training_nan_mismatches": self.nan_mismatches,
        }


def timed_scores(predictor: Predictor, features: np.ndarray) -> tuple[np.ndarray, float]:
    """The scores of ``features`` and the milliseconds per 1,000 rows, after a warm-up."""
    predictor.predict(features[:256])
    started = time.perf_counter()
    scores = predictor.predict(features)
    elapsed = time.perf_counter() - started
    return scores, 1_000 * elapsed * 1_000 / max(len(features), 1)


def compare(
    source: Predictor,
    optimized: Predictor,
    rows: TrainingRows,
    kind: str,
    tolerance: float,
    *,
    training: TrainingRows | None = None,
) -> ParityReport:
    """Score the holdout (and ``training``, where given) with both predictors and measure
    the difference."""
    expected, source_ms = timed_scores(source, rows.features)
    actual, optimized_ms = timed_scores(optimized, rows.features)
    missing_expected, missing_actual = np.isnan(expected), np.isnan(actual)
    both = ~(missing_expected | missing_actual)
    diff = np.abs(expected[both] - actual[both])
    finite = bool(np.isfinite(diff).all())
    return ParityReport(
        kind=kind,
        tolerance=tolerance,
        rows=rows.rows,
        max_abs_diff=float(diff.max()) if diff.size and finite else (0.0 if finite else math.inf),
        p999_abs_diff=float(np.quantile(diff, P999)) if diff.size and finite else 0.0,
        nan_mismatches=int((missing_expected != missing_actual).sum()),
        source=evaluate(rows.labels[both], expected[both], "source holdout"),
        optimized=evaluate(rows.labels[both], np.clip(actual[both], 0, 1), "optimized holdout"),
        source_ms_per_1k=source_ms,
        optimized_ms_per_1k=optimized_ms,
        training=None if training is None else training_parity(source, optimized, training),
    )


def training_parity(source: Predictor, optimized: Predictor, rows: TrainingRows) -> TrainingParity:
    expected, actual = source.predict(rows.features), optimized.predict(rows.features)
    missing_expected, missing_actual = np.isnan(expected), np.isnan(actual)
    diff = np.abs(expected - actual)[~(missing_expected | missing_actual)]
    return TrainingParity(
        rows=rows.rows,
        max_abs_diff=float(diff.max()) if diff.size else 0.0,
        changed=int((diff > 1e-6).sum()),
        nan_mismatches=int((missing_expected != missing_actual).sum()),
    )


def parity_markdown(report: ParityReport, source_ref: str, how: str) -> str:
    """The model card's optimisation section: how it was made, the parity check, metrics."""
    verdict = "passed" if report.passed else "failed"
    lines = [
        f"Optimised from `{source_ref}` to `{report.kind}`: {how}.",
        "",
        f"Parity on the source's holdout ({report.rows} rows): max |score difference| "
        f"{report.max_abs_diff:.3g}, p99.9 {report.p999_abs_diff:.3g}, "
        f"{report.nan_mismatches} NaN mismatches; tolerance {report.tolerance:g} ({verdict}).",
        *(
            []
            if report.training is None
            else [
                "",
                f"Also over the source's training rows (a float32 branch flip needs a feature "
                f"value within float32 rounding above a threshold): "
                f"{report.training.describe()}.",
            ]
        ),
        "",
        "| holdout metric | source | optimised |",
        "|---|---|---|",
    ]
    source, optimized = report.source.as_dict(""), report.optimized.as_dict("")
    lines += [f"| {k} | {source[k]:.6g} | {optimized[k]:.6g} |" for k in source]
    lines.append(
        f"| ms per 1,000 rows (in-process, one run) | {report.source_ms_per_1k:.3g} | "
        f"{report.optimized_ms_per_1k:.3g} |"
    )
    return "\n".join(lines)
