"""The ONNX flavor: scores through the Predictor protocol, loads only safe graphs (no custom
operator domains, no external data, no local functions), runs on the CPU unless a GPU is
configured and present, with the configured number of threads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from onnx import TensorProto, helper, numpy_helper

from lakecast.config import settings
from lakecast.errors import ModelIntegrityError, SchemaError, UnsafeArtifactError
from lakecast.models.flavors import build_predictor
from lakecast.models.flavors.onnx_flavor import (
    CPU,
    CUDA,
    choose_providers,
    input_dtype,
    load,
    providers,
)
from lakecast.registry import Registry, Signature

SIGNATURE = Signature.of(["a", "b", "c"], dtype="float64")
WEIGHTS = np.array([[0.5], [-1.0], [2.0]])


def _logistic_graph(
    *, domain: str = "", external: bool = False, element: int = TensorProto.DOUBLE
) -> bytes:
    """sigmoid(x @ WEIGHTS) on a (rows, 3) input of ``element`` type (float64 by default)."""
    dtype = {TensorProto.DOUBLE: np.float64, TensorProto.FLOAT: np.float32}.get(element, np.int64)
    weights = numpy_helper.from_array(WEIGHTS.astype(dtype), "weights")
    if external:
        weights.data_location = TensorProto.EXTERNAL
        weights.ClearField("raw_data")
        weights.external_data.add(key="location", value="/etc/passwd")
    nodes = [
        helper.make_node("MatMul", ["features", "weights"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["score"], domain=domain),
    ]
    graph = helper.make_graph(
        nodes,
        "logistic",
        [helper.make_tensor_value_info("features", element, [None, 3])],
        [helper.make_tensor_value_info("score", element, [None, 1])],
        initializer=[weights],
    )
    opsets = [helper.make_opsetid("", 17)]
    if domain:
        opsets.append(helper.make_opsetid(domain, 1))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    data: bytes = model.SerializeToString()
    return data


def _predictor(data: bytes, policy: str = "propagate"):  # type: ignore[no-untyped-def]
    return build_predictor(data, "onnx", SIGNATURE, policy, "test", sha256_verified=True)  # type: ignore[arg-type]


def test_scores_like_numpy_with_the_nan_policy() -> None:
    x = np.array([[1.0, 2.0, 3.0], [0.0, np.nan, 1.0], [-1.0, 0.5, 0.0]])
    scores = _predictor(_logistic_graph()).predict(x)
    expected = 1 / (1 + np.exp(-(np.nan_to_num(x) @ WEIGHTS).reshape(-1)))
    assert scores[1] != scores[1]  # propagate: the NaN row scores NaN
    np.testing.assert_allclose(scores[[0, 2]], expected[[0, 2]], rtol=0, atol=1e-15)
    columns = {"a": x[:, 0], "b": x[:, 1], "c": x[:, 2]}
    np.testing.assert_array_equal(
        _predictor(_logistic_graph(), "impute_zero").predict(columns), expected
    )


def test_a_matrix_longer_than_a_slice_is_scored_in_slices_row_for_row() -> None:
    from lakecast.models.flavors.onnx_flavor import SLICE_ROWS

    x = np.random.default_rng(4).normal(size=(2 * SLICE_ROWS + 5, 3))
    x[SLICE_ROWS, 1] = np.nan  # the first row of the second slice
    scores = _predictor(_logistic_graph()).predict(x)
    expected = 1 / (1 + np.exp(-(x @ WEIGHTS).reshape(-1)))
    assert scores.shape == (len(x),) and np.isnan(scores[SLICE_ROWS])
    keep = ~np.isnan(expected)
    np.testing.assert_allclose(scores[keep], expected[keep], rtol=0, atol=1e-15)


def test_a_session_runs_on_the_cpu_only_when_no_gpu_is_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert providers() == [CPU]
    assert _predictor(_logistic_graph()).providers == [CPU]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert _predictor(_logistic_graph()).providers == [CPU]


def test_a_configured_gpu_is_used_only_where_the_build_has_cuda(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import onnxruntime as ort

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    assert providers() == (["CUDAExecutionProvider", CPU] if has_cuda else [CPU])


@pytest.mark.parametrize(
    ("visible", "available", "chosen"),
    [
        (None, [CUDA, CPU], [CPU]),  # no GPU configured: a CUDA build still runs on the CPU
        ("", ["TensorrtExecutionProvider", CUDA, CPU], [CPU]),  # a Spark task given no GPU
        ("-1", [CUDA, CPU], [CPU]),
        ("0", [CPU], [CPU]),  # a GPU configured, but a build without CUDA
        ("1", ["TensorrtExecutionProvider", CUDA, CPU], [CUDA, CPU]),  # never TensorRT
    ],
)
def test_the_provider_choice(visible: str | None, available: list[str], chosen: list[str]) -> None:
    assert choose_providers(visible, available) == chosen


def test_a_spark_task_given_no_gpu_chooses_the_cpu_even_on_a_cuda_build(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What place_worker leaves a GPU-less task (the executor's own list hidden) is what the
    session's providers are chosen from."""
    import os

    from lakecast.scoring.placement import place_worker

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    place_worker([])
    assert choose_providers(os.environ.get("CUDA_VISIBLE_DEVICES"), [CUDA, CPU]) == [CPU]
    assert providers() == [CPU]


def test_the_workers_own_model_threads_size_the_session(tmp_path: Path) -> None:
    """A worker built in code (not from the config file) sizes the ONNX pool from its
    WorkerConfig, for the version it serves and for any it loads later."""
    from lakecast.config import ServingSettings
    from lakecast.serving.model_source import ModelSource, SnapshotSource
    from lakecast.serving.worker import InferenceWorker
    from lakecast.serving.worker_config import WorkerConfig

    path = tmp_path / "model.onnx"
    path.write_bytes(_logistic_graph())
    registry = Registry(tmp_path / "registry")
    first = registry.register("logit", artifact=path, signature=SIGNATURE, nan_policy="error")
    second = registry.register("logit", artifact=path, signature=SIGNATURE, bump="minor")
    threads = settings().serving.model_threads + 2
    models = ModelSource(registry, first.ref)
    config = WorkerConfig(serving=ServingSettings(model_threads=threads))
    InferenceWorker(config, models, SnapshotSource(str(tmp_path / "none")))
    models.refresh()
    for model in (models.current(), models.model(second.ref)):
        options = model.predictor.model.get_session_options()  # type: ignore[attr-defined]
        assert options.intra_op_num_threads == threads


def test_session_threads_come_from_model_threads() -> None:
    default = load(_logistic_graph(), "test")
    assert default.get_session_options().intra_op_num_threads == settings().serving.model_threads
    assert (
        load(_logistic_graph(), "test", threads=3).get_session_options().intra_op_num_threads == 3
    )


def test_a_custom_operator_domain_is_refused() -> None:
    with pytest.raises(
        UnsafeArtifactError, match=r"custom operator domains \['com.example.evil'\]"
    ):
        load(_logistic_graph(domain="com.example.evil"), "model 'x' version 1.0.0")


def test_external_tensor_data_is_refused() -> None:
    with pytest.raises(UnsafeArtifactError, match="'weights' reads external data"):
        load(_logistic_graph(external=True), "model 'x' version 1.0.0")


def test_bytes_that_are_no_onnx_model_are_refused() -> None:
    with pytest.raises(UnsafeArtifactError, match=r"model 'x' version 1\.0\.0: onnx"):
        load(b"\x08\x01garbage" * 10, "model 'x' version 1.0.0")


def test_a_registered_onnx_artifact_is_sha256_verified(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(_logistic_graph())
    registry = Registry(tmp_path / "registry")
    record = registry.register("logit", artifact=path, signature=SIGNATURE, nan_policy="error")
    assert record.flavor == "onnx"
    _, predictor = registry.load(record.ref)
    assert predictor.predict(np.zeros((2, 3))).tolist() == [0.5, 0.5]
    stored = Path(record.artifact_path)
    stored.write_bytes(_logistic_graph().replace(WEIGHTS.tobytes(), (WEIGHTS * 2).tobytes()))
    with pytest.raises(ModelIntegrityError, match="has sha256"):
        registry.load(record.ref)


@pytest.mark.parametrize(
    ("element", "dtype"), [(TensorProto.FLOAT, np.float32), (TensorProto.DOUBLE, np.float64)]
)
def test_the_matrix_dtype_follows_the_graphs_input(element: int, dtype: type) -> None:
    """What the driver reads from the bytes (the JVM's cast, the workers' matrix) is what the
    session takes: a float graph gets float32 features whatever flavor it came from."""
    import hashlib

    from lakecast.scoring.batch import matrix_of, matrix_order
    from lakecast.scoring.cache import ModelPayload

    data = _logistic_graph(element=element)
    payload = ModelPayload(
        "logit", "1.1.0", hashlib.sha256(data).hexdigest(), "onnx", SIGNATURE.to_json(),
        "propagate", data,
    )  # fmt: skip
    predictor = _predictor(data)
    assert input_dtype(data, "test") is dtype
    assert payload.feature_dtype is predictor.dtype is dtype
    assert payload.float32_features == (dtype is np.float32)
    batch = pa.RecordBatch.from_pydict({"a": [1.0, 0.0], "b": [2.0, 1.0], "c": [3.0, -1.0]})
    matrix = matrix_of(batch, SIGNATURE.input_names, payload.feature_dtype, matrix_order(predictor))
    assert matrix.dtype == dtype and matrix.flags.c_contiguous
    expected = 1 / (1 + np.exp(-(np.array([[1.0, 2, 3], [0, 1, -1]]) @ WEIGHTS).reshape(-1)))
    np.testing.assert_allclose(predictor.predict(matrix), expected, rtol=1e-6)


def test_a_graph_taking_integers_is_refused_by_name() -> None:
    with pytest.raises(SchemaError, match=r"model 'x' version 1\.0\.0: onnx graph input is "):
        input_dtype(_logistic_graph(element=TensorProto.INT64), "model 'x' version 1.0.0")
