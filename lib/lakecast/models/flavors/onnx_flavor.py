"""ONNX graphs run by ONNX Runtime: the flavor of every optimised version (``lakecast models
optimize``), loaded safely.

An ONNX file is a graph of operators, not code, so loading one runs nothing of the artifact's
choosing, with three exceptions this module closes before a session exists:

- custom operators: a graph may name an operator domain that only a native library registered
  at run time implements; lakecast registers none, and refuses any domain outside the standard
  ones (``ai.onnx``, ``ai.onnx.ml``) and ONNX Runtime's own built-in contrib ops
  (``com.microsoft``, which its quantiser emits);
- external data: a tensor may point at a file beside the model, read at load; refused, the
  artifact must be self-contained (what was hashed is all that is loaded);
- devices: the session runs on the CPU unless a GPU is both configured for this process
  (``CUDA_VISIBLE_DEVICES`` names one, as :mod:`lakecast.scoring.placement` sets it) and
  present in this ONNX Runtime build; a process given no GPU never touches one.

The session's threads are the serving setting ``model_threads`` (workers scale by processes;
Spark by tasks), fixed when the session is built: ONNX Runtime's own thread pool does not obey
threadpoolctl. A worker passes its own config's value through its model source.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from lakecast.errors import SchemaError, UnsafeArtifactError
from lakecast.models.predictor import MatrixPredictor, NanPolicy
from lakecast.registry.signature import Signature

FILE_NAME = "model.onnx"
# Operator domains a graph may use: ONNX's own, its ML operators, and the contrib operators
# built into ONNX Runtime (no library is loaded for them).
ALLOWED_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# The input element types lakecast feeds, by ONNX Runtime's type name: the matrix a caller
# builds must be of this dtype, or ONNX Runtime refuses it and a conversion costs a copy.
INPUT_DTYPES: dict[str, Any] = {"tensor(float)": np.float32, "tensor(double)": np.float64}
_ELEMENT_TYPE_NAMES = {1: "tensor(float)", 11: "tensor(double)"}  # onnx.TensorProto's codes


def input_dtype(data: bytes, where: str) -> Any:
    """The numpy dtype of the feature matrix the graph in ``data`` takes (float32 or float64),
    read from the graph's declaration without building a session (a driver decides with it).

    Raises:
        UnsafeArtifactError: the bytes are not an ONNX model.
        SchemaError: the graph's first input is neither float nor double.
    """
    import onnx

    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and friends
        msg = f"{where}: onnx artifact cannot be parsed: {type(exc).__name__}: {exc}"
        raise UnsafeArtifactError(msg) from exc
    if not model.graph.input:
        msg = f"{where}: onnx graph has no input"
        raise SchemaError(msg)
    code = model.graph.input[0].type.tensor_type.elem_type
    return dtype_of(_ELEMENT_TYPE_NAMES.get(code, f"element type {code}"), where)


def dtype_of(type_name: str, where: str) -> Any:
    """The numpy dtype of ONNX Runtime's input type name (``tensor(float)``, ...).

    Raises:
        SchemaError: a type lakecast does not feed.
    """
    dtype = INPUT_DTYPES.get(type_name)
    if dtype is None:
        msg = f"{where}: onnx graph input is {type_name}; lakecast feeds float or double"
        raise SchemaError(msg)
    return dtype


def check_graph(model: Any, where: str) -> None:
    """Refuse a graph with custom-op domains, local functions or external tensor data.

    Raises:
        UnsafeArtifactError: naming the first offending domain, operator or tensor.
    """
    from onnx import TensorProto

    domains = {opset.domain for opset in model.opset_import}
    if model.functions:
        names = sorted(f"{f.domain}.{f.name}" for f in model.functions)
        msg = f"{where}: onnx graph defines local functions {names}; lakecast runs none"
        raise UnsafeArtifactError(msg)
    for graph in _graphs(model.graph):
        for node in graph.node:
            domains.add(node.domain)
        for tensor in graph.initializer:
            if tensor.data_location == TensorProto.EXTERNAL:
                msg = f"{where}: onnx tensor {tensor.name!r} reads external data; refused"
                raise UnsafeArtifactError(msg)
    custom = sorted(domains - ALLOWED_DOMAINS)
    if custom:
        msg = (
            f"{where}: onnx graph uses custom operator domains {custom}; "
            f"only {sorted(ALLOWED_DOMAINS)} are run"
        )
        raise UnsafeArtifactError(msg)


def _graphs(graph: Any) -> list[Any]:
    """``graph`` and every subgraph of its nodes (If/Loop/Scan bodies)."""
    from onnx import AttributeProto

    found = [graph]
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == AttributeProto.GRAPH:
                found += _graphs(attribute.g)
            elif attribute.type == AttributeProto.GRAPHS:
                for sub in attribute.graphs:
                    found += _graphs(sub)
    return found


def providers() -> list[str]:
    """ONNX Runtime's providers for this process (:func:`choose_providers` of its
    ``CUDA_VISIBLE_DEVICES`` and this build's providers)."""
    import onnxruntime as ort

    return choose_providers(os.environ.get("CUDA_VISIBLE_DEVICES"), ort.get_available_providers())


def choose_providers(visible_devices: str | None, available: Sequence[str]) -> list[str]:
    """CUDA first only where a GPU is configured (``visible_devices`` names one: not unset,
    empty or ``-1``, which is what a Spark task given no GPU gets) and the build has CUDA;
    the CPU always. No other provider (TensorRT, ...) is ever chosen: it would pick a
    device by itself."""
    configured = (visible_devices or "").strip() not in ("", "-1")
    if configured and CUDA in available:
        return [CUDA, CPU]
    return [CPU]


def session_threads() -> int:
    """The serving setting ``model_threads``: how many threads a model scores a batch with."""
    from lakecast.config import settings

    return settings().serving.model_threads


def load(data: bytes, where: str, *, threads: int | None = None) -> Any:
    """An ONNX Runtime session over verified artifact bytes, after :func:`check_graph`.

    Raises:
        UnsafeArtifactError: the bytes are not an ONNX model, or the graph is refused.
    """
    import onnx
    import onnxruntime as ort

    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and friends
        msg = f"{where}: onnx artifact cannot be parsed: {type(exc).__name__}: {exc}"
        raise UnsafeArtifactError(msg) from exc
    check_graph(model, where)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or session_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: its warnings are not JSON log lines
    try:
        return ort.InferenceSession(data, options, providers=providers())
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NotImplemented
        msg = f"{where}: onnx runtime refused the graph: {type(exc).__name__}: {exc}"
        raise UnsafeArtifactError(msg) from exc


# ONNX Runtime sizes every intermediate tensor by the whole input: on 300k rows the demo MLP's
# activations leave the CPU caches, and 32k-row slices run 1.4x faster on two threads (9.3M
# rows/s whole, 13.4M sliced; 1.1x on one thread) and bound the memory a call takes.
SLICE_ROWS = 32_768


class OnnxPredictor(MatrixPredictor):
    """An ONNX Runtime session behind the Predictor protocol.

    The graph has one input of shape (rows, inputs) in float32 or float64, and its first
    output gives one score per row: (rows,), (rows, 1), or (rows, 2) whose column 1 is taken.
    """

    def __init__(self, session: Any, signature: Signature, nan_policy: NanPolicy) -> None:
        super().__init__(session, signature, nan_policy)
        inputs = session.get_inputs()
        if len(inputs) != 1:
            names = [i.name for i in inputs]
            msg = f"onnx graph has inputs {names}; lakecast feeds exactly one feature matrix"
            raise SchemaError(msg)
        shape = inputs[0].shape
        width = len(signature.inputs)
        if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != width):
            msg = f"onnx graph input has shape {shape}; the signature has {width} inputs"
            raise SchemaError(msg)
        self.dtype = dtype_of(inputs[0].type, "onnx model")
        self._input = inputs[0].name
        self._output = session.get_outputs()[0].name

    @property
    def providers(self) -> list[str]:
        """The execution providers the session runs on, in order."""
        providers: list[str] = self.model.get_providers()
        return providers

    def raw_scores(self, matrix: np.ndarray) -> np.ndarray:
        run = self.model.run
        scores = np.concatenate(
            [
                np.asarray(
                    run([self._output], {self._input: matrix[start : start + SLICE_ROWS]})[0]
                )
                for start in range(0, max(matrix.shape[0], 1), SLICE_ROWS)
            ]
        )
        if scores.ndim == 2 and scores.shape[1] == 2:
            return scores[:, 1]
        if scores.ndim == 2 and scores.shape[1] != 1:
            msg = f"onnx model output has shape {scores.shape}; expected one score per row"
            raise SchemaError(msg)
        return scores
