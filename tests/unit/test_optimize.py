"""``lakecast models optimize``: sklearn and Keras versions to ONNX (and int8), parity on the
source's holdout recorded in the card and lineage, and the gate refusing a broken conversion.

Real registry (delta-rs), real models, real ONNX Runtime; no Spark, no broker.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from lakecast.cli.models import app
from lakecast.models.optimize import ConversionError, ParityError, optimize_version
from lakecast.models.optimize.parity import holdout_rows
from lakecast.registry import Registry, render_card
from lakecast.testing.models import (
    perturb_first_tensor,
    register_with_holdout,
    write_features_table,
)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A features table and ``purchase`` 1.0.0 (sklearn) and 1.1.0 (Keras) trained on it."""
    root = tmp_path_factory.mktemp("optimize")
    features = str(root / "features")
    write_features_table(features)
    registry = Registry(root / "registry")
    sklearn = register_with_holdout(registry, features, "sklearn", alias="champion")
    keras = register_with_holdout(registry, features, "keras", alias="challenger")
    return {"registry": registry, "sklearn": sklearn, "keras": keras, "root": root}


def _holdout_scores(registry: Registry, reference: str, source: Any) -> np.ndarray:
    _, predictor = registry.load(reference)
    return predictor.predict(holdout_rows(source).features)


@pytest.mark.parametrize("flavor", ["sklearn", "keras"])
def test_onnx_is_a_minor_version_with_parity_lineage_and_card(
    lake: dict[str, Any], flavor: str
) -> None:
    registry, source = lake["registry"], lake[flavor]
    done = optimize_version(registry, source.ref, "onnx")
    record, report = done.record, done.report

    assert record.flavor == "onnx"
    assert record.semver.major == source.semver.major
    assert record.semver.minor > max(
        v.semver.minor for v in registry.versions("purchase") if v.version != record.version
    )
    assert record.signature == source.signature
    assert record.nan_policy == source.nan_policy
    assert record.lineage.optimized_from == source.ref
    assert record.lineage.optimization["kind"] == "onnx"
    assert record.lineage.training_table == source.lineage.training_table

    expected = _holdout_scores(registry, source.ref, source)
    got = _holdout_scores(registry, record.ref, source)
    assert report.rows == len(expected) > 100
    assert np.abs(got - expected).max() == pytest.approx(report.max_abs_diff, abs=1e-12)
    assert report.max_abs_diff <= 1e-6
    assert report.p999_abs_diff <= report.max_abs_diff
    assert report.source.roc_auc == pytest.approx(source.metrics["holdout_roc_auc"], abs=1e-6)
    assert record.metrics["holdout_roc_auc"] == pytest.approx(report.optimized.roc_auc)
    assert record.metrics["parity_max_abs_diff"] == report.max_abs_diff

    card = render_card(record)
    assert "## Optimization and parity" in card
    assert f"Optimised from `{source.ref}` to `onnx`" in card
    assert re.search(r"max \|score difference\| [0-9.e-]+, p99\.9 [0-9.e-]+", card)
    assert "| roc_auc |" in card
    assert f"- optimized from: `{source.ref}`" in card
    assert "## Optimization and parity" not in render_card(source)


def test_the_keras_graph_folds_its_normalisation_scale_and_takes_float32(
    lake: dict[str, Any],
) -> None:
    """The Normalization's per-column scale lives in the first layer's weights (one pass over
    the batch fewer) and the graph takes float32, which every scoring path then builds."""
    import onnx

    from lakecast.scoring.cache import ModelPayload

    record = optimize_version(lake["registry"], lake["keras"].ref, "onnx").record
    graph = onnx.load_model_from_string(Path(record.artifact_path).read_bytes()).graph
    ops = [node.op_type for node in graph.node]
    assert ops[:2] == ["Sub", "MatMul"] and "Mul" not in ops
    assert ModelPayload.from_version(record).feature_dtype is np.float32


def test_int8_of_the_keras_version_stays_inside_its_looser_bound(lake: dict[str, Any]) -> None:
    source = lake["keras"]
    done = optimize_version(lake["registry"], source.ref, "onnx-int8")
    assert done.record.lineage.optimization["kind"] == "onnx-int8"
    assert done.report.tolerance == 0.05
    assert 0 < done.report.max_abs_diff <= 0.05  # quantised: different, but not far
    import onnx

    data = Path(done.record.artifact_path).read_bytes()
    ops = {node.op_type for node in onnx.load_model_from_string(data).graph.node}
    assert "MatMulInteger" in ops


def test_int8_stays_inside_its_bound_on_the_workers_feature_values(tmp_path: Path) -> None:
    """Features of very different ranges (the worker's own: prices next to 0/1 flags): int8
    quantises a normalised input, never the raw one (0.46 off with the scale folded)."""
    features = str(tmp_path / "features")
    write_features_table(features, online=True)
    registry = Registry(tmp_path / "registry")
    source = register_with_holdout(registry, features, "keras")
    done = optimize_version(registry, source.ref, "onnx-int8")
    assert 0 < done.report.max_abs_diff <= 0.05
    exact = optimize_version(registry, source.ref, "onnx")
    assert exact.report.max_abs_diff <= 1e-6


def test_fp32_of_the_tree_ensemble_is_a_reduced_precision_version(lake: dict[str, Any]) -> None:
    import onnx

    from lakecast.config import settings
    from lakecast.scoring.cache import ModelPayload

    registry, source = lake["registry"], lake["sklearn"]
    done = optimize_version(registry, source.ref, "onnx-fp32")
    record, report = done.record, done.report
    assert record.flavor == "onnx" and record.lineage.optimized_from == source.ref
    assert record.lineage.optimization["kind"] == "onnx-fp32"
    assert report.tolerance == settings().optimization.reduced_precision_tolerance
    assert report.max_abs_diff <= report.tolerance
    graph = onnx.load_model_from_string(Path(record.artifact_path).read_bytes()).graph
    ensemble = graph.node[0]
    assert {a.name for a in ensemble.attribute} >= {"nodes_values", "target_weights"}
    assert ModelPayload.from_version(record).feature_dtype is np.float32
    card = render_card(record)
    assert f"Optimised from `{source.ref}` to `onnx-fp32`" in card
    assert "in float32" in card and "tolerance 0.05" in card
    assert report.training is not None and report.training.within(report.tolerance)
    # The source reads float32: every split is exact, only the leaf sums are rounded.
    assert report.training.changed == 0 and report.training.max_abs_diff < 1e-5
    assert report.max_abs_diff < 1e-5
    assert "thresholds down: the source reads float32" in record.lineage.optimization["how"]
    assert report.training.rows == source.lineage.holdout["train_rows"]
    assert record.lineage.optimization["training_rows"] == report.training.rows
    assert f"over {report.training.rows} training rows" in card


def test_fp32_sends_a_feature_equal_to_a_threshold_the_same_way(lake: dict[str, Any]) -> None:
    """scikit-learn's thresholds are often feature values: a row holding one exactly takes
    the source version's branch in float32 too (the source reads float32: both round it)."""
    from lakecast.models.flavors import build_predictor
    from lakecast.models.optimize.converters import sklearn_to_onnx

    source = lake["sklearn"]
    _, predictor = lake["registry"].load(source.ref)
    model = predictor.model  # type: ignore[attr-defined]
    rows = holdout_rows(source).features
    width = rows.shape[1]
    assert {c.dtype for c in source.signature.inputs} == {"float32"}
    data = sklearn_to_onnx(model, width, "test", float32=True, reads_float32=True)
    fp32 = build_predictor(
        data, "onnx", source.signature, "propagate", "test", sha256_verified=True
    )
    nodes = np.concatenate([tree[0].nodes for tree in model._predictors])
    splits = nodes[~nodes["is_leaf"].astype(bool)]
    on_threshold = rows[np.arange(len(splits)) % len(rows)].copy()
    on_threshold[np.arange(len(splits)), splits["feature_idx"]] = splits["num_threshold"]
    assert len(splits) > 100
    expected = predictor.predict(on_threshold)
    np.testing.assert_allclose(fp32.predict(on_threshold), expected, rtol=0, atol=1e-6)


def test_fp32_is_refused_when_training_rows_flip_where_the_holdout_does_not() -> None:
    """Two float64 values one ulp apart (a feature computed two ways) that the trees split
    between are one float32 value: the training rows, where thresholds come from, show the
    flip that a holdout without such values hides."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from lakecast.models.flavors import build_predictor
    from lakecast.models.flavors.sklearn_flavor import SklearnPredictor
    from lakecast.models.optimize.converters import sklearn_to_onnx
    from lakecast.models.optimize.parity import compare
    from lakecast.models.training import TrainingRows
    from lakecast.registry import Signature

    rng = np.random.default_rng(0)
    twin = np.nextafter(0.675, 1.0)
    labels = rng.integers(0, 2, 2_000)
    train = np.column_stack([np.where(labels == 1, twin, 0.675), rng.standard_normal(2_000)])
    model = HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(train, labels)
    signature = Signature.of(["a", "b"], dtype="float64")
    source = SklearnPredictor(model, signature, "propagate")
    data = sklearn_to_onnx(model, 2, "test", float32=True)
    fp32 = build_predictor(data, "onnx", signature, "propagate", "test", sha256_verified=True)
    holdout = np.column_stack([rng.choice([0.5, 0.9], 500), rng.standard_normal(500)])
    days = np.full(2_000, np.datetime64("2026-01-01"))

    def rows(features: np.ndarray, y: np.ndarray) -> TrainingRows:
        return TrainingRows(features, y, days[: len(y)])

    report = compare(
        source, fp32, rows(holdout, labels[:500]), "onnx-fp32", 0.05,
        training=rows(train, labels),
    )  # fmt: skip
    assert report.max_abs_diff <= 1e-6  # the holdout alone would let it through
    assert report.training is not None and report.training.max_abs_diff > 0.05
    assert report.training.changed > 500
    with pytest.raises(ParityError, match=r"over 2000 training rows \(\d+ moved by more"):
        report.check("optimize m:1.0.0 --to onnx-fp32")


def test_a_keras_graph_has_no_fp32_kind(lake: dict[str, Any]) -> None:
    with pytest.raises(ConversionError, match="float32 already; its reduced-precision kind"):
        optimize_version(lake["registry"], lake["keras"].ref, "onnx-fp32")


def _shift_base_value(data: bytes) -> bytes:
    """The fp32 ensemble with its base score (a float attribute, no tensor) moved by 1."""
    import onnx

    model = onnx.load_model_from_string(data)
    for attribute in model.graph.node[0].attribute:
        if attribute.name == "base_values":
            attribute.floats[0] += 1.0
    changed: bytes = model.SerializeToString()
    return changed


def test_a_broken_fp32_conversion_is_refused_by_the_looser_bound(lake: dict[str, Any]) -> None:
    registry, source = lake["registry"], lake["sklearn"]
    before = [v.version for v in registry.versions("purchase")]
    with pytest.raises(ParityError, match=r"refused.*tolerance of onnx-fp32 0\.05"):
        optimize_version(registry, source.ref, "onnx-fp32", tamper=_shift_base_value)
    assert [v.version for v in registry.versions("purchase")] == before


def test_xla_of_the_keras_version_is_its_own_archive_compiled_by_xla(
    lake: dict[str, Any],
) -> None:
    from lakecast.models.flavors.keras_flavor import compiled_with_xla

    registry, source = lake["registry"], lake["keras"]
    done = optimize_version(registry, source.ref, "xla")
    record, report = done.record, done.report
    assert record.flavor == "keras" and record.lineage.optimized_from == source.ref
    assert record.lineage.optimization["kind"] == "xla"
    assert report.tolerance == 1e-6 and report.max_abs_diff <= 1e-6
    assert compiled_with_xla(Path(record.artifact_path).read_bytes())
    assert not compiled_with_xla(Path(source.artifact_path).read_bytes())
    _, served = registry.load(record.ref)
    _, unchanged = registry.load(source.ref)
    assert served.jit_compile and not unchanged.jit_compile  # type: ignore[attr-defined]
    assert f"Optimised from `{source.ref}` to `xla`" in render_card(record)
    with pytest.raises(ConversionError, match="xla compiles a Keras forward pass"):
        optimize_version(registry, lake["sklearn"].ref, "xla")


def test_a_tree_ensemble_has_nothing_to_quantise(lake: dict[str, Any]) -> None:
    before = len(lake["registry"].versions("purchase"))
    with pytest.raises(ConversionError, match="no matrix products to quantise"):
        optimize_version(lake["registry"], lake["sklearn"].ref, "onnx-int8")
    assert len(lake["registry"].versions("purchase")) == before


@pytest.mark.parametrize(("flavor", "delta"), [("keras", 1e-3), ("sklearn", 1.0)])
def test_a_broken_conversion_is_refused_and_not_registered(
    lake: dict[str, Any], flavor: str, delta: float
) -> None:
    registry, source = lake["registry"], lake[flavor]
    before = [v.version for v in registry.versions("purchase")]
    with pytest.raises(ParityError, match=r"refused.*max \|score diff\|.*tolerance of onnx 1e-06"):
        optimize_version(
            registry, source.ref, "onnx", tamper=lambda data: perturb_first_tensor(data, delta)
        )
    assert [v.version for v in registry.versions("purchase")] == before


def test_a_version_without_a_holdout_in_its_lineage_is_refused(tmp_path: Path) -> None:
    from lakecast.testing.models import register_model

    record = register_model(str(tmp_path / "registry"))
    with pytest.raises(ParityError, match="lineage names no holdout"):
        optimize_version(Registry(tmp_path / "registry"), record.ref, "onnx")


def test_unknown_kind_is_refused(lake: dict[str, Any]) -> None:
    with pytest.raises(ConversionError, match="'fp8' is not one of"):
        optimize_version(lake["registry"], lake["sklearn"].ref, "fp8")


def test_cli_optimizes_and_refuses_with_exit_status(lake: dict[str, Any]) -> None:
    root = str(lake["registry"].root)
    runner = CliRunner()
    done = runner.invoke(app, ["--root", root, "optimize", lake["sklearn"].ref, "--to", "onnx"])
    assert done.exit_code == 0, done.output
    assert re.search(
        r"purchase:1\.\d+\.0 \(onnx of purchase:1\.0\.0\): max \|score diff\|", done.output
    )
    assert "roc_auc" in done.output
    refused = runner.invoke(
        app,
        ["--root", root, "optimize", lake["keras"].ref, "--to", "onnx-int8", "--tolerance", "1e-9"],
    )
    assert refused.exit_code != 0
    assert isinstance(refused.exception, ParityError)
