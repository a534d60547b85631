"""Optimised versions: a registered model converted for ONNX Runtime, checked against its source
on the source's holdout, and registered as the next MINOR version of the same model.

    optimize_version(registry, "purchase:1.0.0", "onnx")

Kinds:

- ``onnx``: the same function in ONNX (exact: float rounding only);
- ``onnx-int8``: ``onnx`` with its matrix products dynamically quantised to int8 (Keras
  models; a tree ensemble has none);
- ``onnx-fp32``: scikit-learn models in float32 (input, thresholds, leaf values), skl2onnx's
  usual form: the reduced-precision kind of a tree ensemble (a Keras graph is float32
  already). Its splits are exact where the source's signature reads float32 (the demo's);
  only the leaf sums are rounded. Chosen over treelite's GTIL predictor, which is exact but
  10-20x slower than ONNX Runtime here (ms per 1,000 rows, one thread, on the demo champion);
- ``xla``: a Keras model's own archive, compiled with ``jit_compile=True`` and served by the
  Keras flavor through XLA (exact: the same weights, fused differently).

``onnx-fp32`` is also checked on the source's training rows (see
:func:`~lakecast.models.optimize.parity.training_rows_of`). The new version keeps the
source's signature, NaN policy and card, with lineage
``optimized_from`` / ``optimization`` and a card section giving the parity check. The gate
(:class:`~lakecast.models.optimize.parity.ParityError`) refuses registration when the largest
|score difference| exceeds the kind's tolerance (``optimization`` in ``conf/lakecast.yaml``).
"""

from __future__ import annotations

import dataclasses
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from lakecast.models.optimize.converters import (
    ConversionError,
    keras_to_onnx,
    keras_xla,
    quantize_int8,
    sklearn_to_onnx,
)
from lakecast.models.optimize.parity import (
    ParityError,
    ParityReport,
    compare,
    holdout_rows,
    parity_markdown,
    training_rows_of,
)

if TYPE_CHECKING:
    from lakecast.registry import ModelVersion, Registry
    from lakecast.registry.records import Flavor

Kind = Literal["onnx", "onnx-int8", "onnx-fp32", "xla"]
KINDS: tuple[Kind, ...] = ("onnx", "onnx-int8", "onnx-fp32", "xla")
REDUCED_PRECISION: frozenset[Kind] = frozenset({"onnx-int8", "onnx-fp32"})
# Checked on the training rows too: on the demo table a float32 champion moved 9 % of them
# (max 0.168) where its holdout moved none (7.5e-7).
CHECKED_ON_TRAINING_ROWS: frozenset[Kind] = frozenset({"onnx-fp32"})


@dataclass(frozen=True)
class OptimizedVersion:
    """The registered version and the parity check that let it in."""

    record: ModelVersion
    report: ParityReport


def check_kind(kind: str) -> Kind:
    for known in KINDS:
        if kind == known:
            return known
    msg = f"optimization kind {kind!r} is not one of {KINDS}"
    raise ConversionError(msg)


def tolerance_of(kind: Kind) -> float:
    """The configured parity tolerance of ``kind``: exact, or reduced precision."""
    from lakecast.config import settings

    tolerances = settings().optimization
    if kind in REDUCED_PRECISION:
        return tolerances.reduced_precision_tolerance
    return tolerances.exact_tolerance


def convert(source: ModelVersion, model: object, kind: Kind, where: str) -> tuple[bytes, str]:
    """The artifact bytes of ``model`` (the source's loaded estimator or network) as
    ``kind`` (ONNX but for ``xla``) and how they were made."""
    width = len(source.signature.inputs)
    if kind == "xla":
        if source.flavor != "keras":
            msg = f"{where}: xla compiles a Keras forward pass; this is a {source.flavor} version"
            raise ConversionError(msg)
        import tensorflow as tf

        data = keras_xla(model, where)
        return (
            data,
            f"Keras forward pass compiled by XLA (jit_compile, TensorFlow {tf.__version__})",
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf2onnx and skl2onnx warn about numpy and opsets
        if source.flavor == "sklearn":
            reads_float32 = all(c.dtype == "float32" for c in source.signature.inputs)
            data = sklearn_to_onnx(
                model, width, where, float32=kind == "onnx-fp32", reads_float32=reads_float32
            )
            how = f"{type(model).__name__} converted to ONNX (float64 input)"
            if kind == "onnx-fp32":
                how = (
                    f"{type(model).__name__} converted to ONNX in float32 (input and leaf"
                    " values rounded to nearest, thresholds "
                    + (
                        "down: the source reads float32, so every split is exact)"
                        if reads_float32
                        else "to nearest: the source reads float64)"
                    )
                )
        elif source.flavor == "keras" and kind == "onnx-fp32":
            msg = (
                f"{where}: a Keras model's onnx graph is float32 already; its reduced-precision"
                " kind is onnx-int8"
            )
            raise ConversionError(msg)
        elif source.flavor == "keras":
            data = keras_to_onnx(model, width, where, fold_scales=kind != "onnx-int8")
            how = "Keras forward pass converted by tf2onnx (float32)"
        else:
            msg = f"{where}: a {source.flavor} version is optimised already; start from its source"
            raise ConversionError(msg)
        if kind == "onnx-int8":
            data = quantize_int8(data, where)
            how += (
                ", matrix products after the first dynamically quantised to int8 (weights"
                " per channel) by ONNX Runtime"
            )
    import onnxruntime

    return data, f"{how}; run by ONNX Runtime {onnxruntime.__version__}"


def next_minor(registry: Registry, source: ModelVersion) -> str:
    """The next free MINOR version in the source's major line."""
    major = source.semver.major
    minors = [v.semver.minor for v in registry.versions(source.name) if v.semver.major == major]
    return f"{major}.{max(minors) + 1}.0"


def optimize_version(
    registry: Registry,
    reference: str,
    kind: str,
    *,
    tolerance: float | None = None,
    created_by: str | None = None,
    tamper: Callable[[bytes], bytes] | None = None,
) -> OptimizedVersion:
    """Convert ``reference`` to ``kind``, check parity on its holdout, register it.

    Args:
        registry: where the source is and the new version goes.
        reference: ``NAME:VERSION`` (or ``NAME@ALIAS``) of the source.
        kind: one of :data:`KINDS`.
        tolerance: the largest max |score difference| accepted; default the kind's configured.
        created_by: who registers; default the current user.
        tamper: a test hook, applied to the converted bytes before the check (a broken
            conversion must be refused).

    Raises:
        ConversionError: the kind or the model cannot be converted.
        ParityError: no holdout in the lineage, or the scores differ beyond the tolerance.
    """
    from lakecast.models import load_model
    from lakecast.models.flavors import build_predictor

    chosen = check_kind(kind)
    source = registry.resolve(reference)
    where = f"optimize {source.ref} --to {chosen}"
    rows = holdout_rows(source)
    predictor = load_model(source)
    data, how = convert(source, getattr(predictor, "model", None), chosen, where)
    if tamper is not None:
        data = tamper(data)
    flavor: Flavor = "keras" if chosen == "xla" else "onnx"
    file_name = "model.keras" if chosen == "xla" else "model.onnx"
    optimized = build_predictor(
        data, flavor, source.signature, source.nan_policy, where, sha256_verified=True
    )
    limit = tolerance_of(chosen) if tolerance is None else tolerance
    training = training_rows_of(source) if chosen in CHECKED_ON_TRAINING_ROWS else None
    report = compare(predictor, optimized, rows, chosen, limit, training=training)
    report.check(where)
    lineage = dataclasses.replace(
        source.lineage,
        optimized_from=source.ref,
        optimization={**report.as_dict(), "how": how, "source_flavor": source.flavor},
    )
    card = dataclasses.replace(source.card, optimization=parity_markdown(report, source.ref, how))
    metrics = {
        **report.optimized.as_dict(),
        "batch_latency_ms": report.optimized_ms_per_1k,
        "parity_max_abs_diff": report.max_abs_diff,
        "parity_p999_abs_diff": report.p999_abs_diff,
    }
    with tempfile.TemporaryDirectory(prefix="lakecast-optimize-") as tmp:
        artifact = Path(tmp) / file_name
        artifact.write_bytes(data)
        record = registry.register(
            source.name,
            artifact=artifact,
            flavor=flavor,
            signature=source.signature,
            metrics=metrics,
            lineage=lineage,
            card=card,
            nan_policy=source.nan_policy,
            version=next_minor(registry, source),
            created_by=created_by,
            description=f"{source.description or source.name} ({chosen} of {source.version})",
        )
    return OptimizedVersion(record, report)


__all__ = [
    "KINDS",
    "ConversionError",
    "Kind",
    "OptimizedVersion",
    "ParityError",
    "ParityReport",
    "optimize_version",
]
