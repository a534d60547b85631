"""Conversions of a loaded model to ONNX bytes, one function per source kind.

- HistGradientBoosting (the demo champion): lakecast's own converter to ONNX-ML's
  ``TreeEnsembleRegressor`` with float64 thresholds, leaf values and input, then a sigmoid.
  skl2onnx 1.20 cannot do it here: its tree converter hands a Python bool to an int attribute,
  which protobuf 7 refuses, and its float32 thresholds move a row that sits on a threshold to
  the other branch (max |score diff| 0.008 over 500k rows measured: not the same function).
  Its float32 form is the ``onnx-fp32`` kind, gated by the reduced-precision tolerance: exact
  splits for a model whose signature reads float32 (thresholds rounded down), within
  float32 rounding of each threshold otherwise (rounded to nearest).
- other scikit-learn classifiers: skl2onnx with a float64 input, keeping ``probabilities``.
- Keras on TensorFlow: tf2onnx on the model's forward pass as a ``tf.function``. Keras 3's
  own ``export(format="onnx")`` is the same call, but its graph takes the constants a
  ``Normalization(mean=..., variance=...)`` layer captures as extra graph inputs, which no
  caller feeds; here the captured values become initializers. The normalisation's scaling
  is then folded into the first layer's weights (:func:`fold_column_scales`): one pass over
  the batch fewer, the same products to within a rounding.
- ``int8``: ONNX Runtime's dynamic quantisation of the matrix products of an ONNX graph.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from lakecast.errors import RegistryError

INPUT_NAME = "features"
OUTPUT_NAME = "score"
OPSET = 17
ML_OPSET = 3  # TreeEnsembleRegressor with float64 thresholds (nodes_values_as_tensor)
_MATRIX_OPS = frozenset({"MatMul", "Gemm"})


class ConversionError(RegistryError):
    """A model that lakecast cannot convert to the asked kind; the message says why."""


def sklearn_to_onnx(
    model: Any, width: int, where: str, *, float32: bool = False, reads_float32: bool = False
) -> bytes:
    """ONNX bytes computing ``predict_proba(x)[:, 1]`` (or ``predict``) of a fitted estimator.

    ``float32``: the reduced-precision form (``onnx-fp32``), float32 input and parameters.
    ``reads_float32``: the source version's signature reads float32 inputs (see
    :func:`hist_gradient_boosting_to_onnx`).

    Raises:
        ConversionError: the estimator is of a kind no converter here handles.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    if isinstance(model, HistGradientBoostingClassifier):
        return hist_gradient_boosting_to_onnx(
            model, width, where, float32=float32, reads_float32=reads_float32
        )
    return _skl2onnx(model, width, where, float32=float32)


def hist_gradient_boosting_to_onnx(
    model: Any, width: int, where: str, *, float32: bool = False, reads_float32: bool = False
) -> bytes:
    """A binary HistGradientBoostingClassifier as one tree ensemble and a sigmoid.

    Each node keeps its split: ``x <= threshold`` goes to the left child, a missing value to
    the side the tree learned (``missing_go_to_left``), as scikit-learn walks it. In float64
    (``onnx``) that is exact. In float32 (``onnx-fp32``, skl2onnx's usual form) the input,
    thresholds and leaf values are rounded. Where the source ``reads_float32`` (its predictor
    rounds every input to float32, as the demo's signature says), each threshold is rounded
    *down*: for a float32 ``x``, ``x <= t`` exactly when ``x`` is at most the largest float32
    not above ``t``, so every row takes the source's branches and only the leaf sums differ
    (float32 rounding). A source that reads float64 cannot be split alike in float32: its
    thresholds are rounded to nearest, which is monotone, so a value at or below its
    threshold still goes left, and one above it within float32 rounding (~6e-8 relative) can
    go left too, moving that row's score by the difference of two subtrees (0.17 on the demo
    table's training rows, where features one float64 ulp apart sit either side of a split);
    the parity gate refuses such a version. Rounded down there instead, every value *equal*
    to a threshold went right, and scikit-learn's thresholds are often feature values.
    """
    from onnx import TensorProto, helper, numpy_helper

    if getattr(model, "n_trees_per_iteration_", 1) != 1:
        msg = f"{where}: only a binary HistGradientBoostingClassifier converts (one tree a step)"
        raise ConversionError(msg)
    columns: dict[str, list[np.ndarray]] = {key: [] for key in _TREE_FIELDS}
    for tree_id, trees in enumerate(model._predictors):
        nodes = trees[0].nodes
        if nodes["is_categorical"].any():
            msg = f"{where}: tree {tree_id} has categorical splits; no exact converter for those"
            raise ConversionError(msg)
        _add_tree(columns, tree_id, nodes)
    joined = {key: np.concatenate(parts) for key, parts in columns.items()}
    leaves = joined["is_leaf"]
    modes = np.where(leaves, "LEAF", "BRANCH_LEQ")
    base = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1)
    thresholds = np.where(leaves, 0.0, joined["threshold"])
    weights = joined["value"][leaves]
    if float32:
        values = {
            "nodes_values": _float32_thresholds(thresholds, down=reads_float32).tolist(),
            "target_weights": weights.astype(np.float32).tolist(),
            "base_values": base.astype(np.float32).tolist(),
        }
    else:
        values = {
            "nodes_values_as_tensor": numpy_helper.from_array(thresholds.astype(np.float64)),
            "target_weights_as_tensor": numpy_helper.from_array(weights.astype(np.float64)),
            "base_values_as_tensor": numpy_helper.from_array(base),
        }
    ensemble = helper.make_node(
        "TreeEnsembleRegressor",
        [INPUT_NAME],
        ["raw"],
        domain="ai.onnx.ml",
        n_targets=1,
        aggregate_function="SUM",
        post_transform="NONE",
        nodes_treeids=joined["tree"].tolist(),
        nodes_nodeids=joined["node"].tolist(),
        nodes_featureids=np.where(leaves, 0, joined["feature"]).tolist(),
        nodes_modes=modes.tolist(),
        nodes_truenodeids=np.where(leaves, 0, joined["left"]).tolist(),
        nodes_falsenodeids=np.where(leaves, 0, joined["right"]).tolist(),
        nodes_missing_value_tracks_true=np.where(leaves, 0, joined["missing_left"]).tolist(),
        target_treeids=joined["tree"][leaves].tolist(),
        target_nodeids=joined["node"][leaves].tolist(),
        target_ids=[0] * int(leaves.sum()),
        **values,
    )
    element = TensorProto.FLOAT if float32 else TensorProto.DOUBLE
    sigmoid = helper.make_node("Sigmoid", ["raw"], [OUTPUT_NAME])
    graph = helper.make_graph(
        [ensemble, sigmoid],
        "hist_gradient_boosting",
        [helper.make_tensor_value_info(INPUT_NAME, element, [None, width])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [None, 1])],
    )
    return _finish(graph, where)


def _float32_thresholds(thresholds: np.ndarray, *, down: bool) -> np.ndarray:
    """float64 thresholds as float32: rounded to nearest, or ``down`` to the largest float32
    not above each (exact splits for float32 inputs)."""
    rounded = thresholds.astype(np.float32)
    if down:
        above = rounded.astype(np.float64) > thresholds
        rounded[above] = np.nextafter(rounded[above], np.float32(-np.inf))
    return rounded


_TREE_FIELDS = (
    "tree",
    "node",
    "feature",
    "threshold",
    "left",
    "right",
    "missing_left",
    "is_leaf",
    "value",
)


def _add_tree(columns: dict[str, list[np.ndarray]], tree_id: int, nodes: np.ndarray) -> None:
    count = nodes.shape[0]
    columns["tree"].append(np.full(count, tree_id, dtype=np.int64))
    columns["node"].append(np.arange(count, dtype=np.int64))
    columns["feature"].append(nodes["feature_idx"].astype(np.int64))
    columns["threshold"].append(nodes["num_threshold"].astype(np.float64))
    columns["left"].append(nodes["left"].astype(np.int64))
    columns["right"].append(nodes["right"].astype(np.int64))
    columns["missing_left"].append(nodes["missing_go_to_left"].astype(np.int64))
    columns["is_leaf"].append(nodes["is_leaf"].astype(bool))
    columns["value"].append(nodes["value"].astype(np.float64))


def _finish(graph: Any, where: str) -> bytes:
    from onnx import checker, helper

    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", 3)],
        producer_name="lakecast",
    )
    model.ir_version = 8  # what ONNX Runtime 1.16 and later read
    try:
        checker.check_model(model)
    except Exception as exc:  # onnx.checker.ValidationError
        msg = f"{where}: the converted graph is not valid ONNX: {exc}"
        raise ConversionError(msg) from exc
    data: bytes = model.SerializeToString()
    return data


def _skl2onnx(model: Any, width: int, where: str, *, float32: bool = False) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
    from skl2onnx.helpers.onnx_helper import select_model_inputs_outputs

    proba = hasattr(model, "predict_proba") and hasattr(model, "classes_")
    try:
        converted = convert_sklearn(
            model,
            initial_types=[
                (INPUT_NAME, (FloatTensorType if float32 else DoubleTensorType)([None, width]))
            ],
            target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
            options={id(model): {"zipmap": False}} if proba else None,
        )
    except Exception as exc:  # skl2onnx raises many kinds for what it cannot convert
        kind = type(model).__name__
        msg = f"{where}: skl2onnx cannot convert a {kind}: {type(exc).__name__}: {exc}"
        raise ConversionError(msg) from exc
    wanted = "probabilities" if proba else converted.graph.output[0].name
    data: bytes = select_model_inputs_outputs(converted, outputs=[wanted]).SerializeToString()
    return data


def keras_to_onnx(model: Any, width: int, where: str, *, fold_scales: bool = True) -> bytes:
    """ONNX bytes of a Keras model's inference pass (TensorFlow backend), float32 input.

    ``fold_scales``: fold the Normalization's scale into the first weights (not for a graph
    to be quantised: see :func:`fold_column_scales`).

    Raises:
        ConversionError: another Keras backend, or tf2onnx failed.
    """
    from lakecast.models.flavors.keras_flavor import import_keras

    backend = import_keras().backend.backend()
    if backend != "tensorflow":
        msg = f"{where}: Keras on {backend}: only the TensorFlow backend converts to ONNX here"
        raise ConversionError(msg)
    import tensorflow as tf
    import tf2onnx
    from keras.src.export.tf2onnx_lib import patch_tf2onnx
    from onnx import numpy_helper

    patch_tf2onnx()  # Keras's own fix of tf2onnx 1.17 for numpy 2, as its export applies it
    spec = tf.TensorSpec((None, width), tf.float32, name=INPUT_NAME)
    forward = tf.function(lambda features: model(features, training=False))
    concrete = forward.get_concrete_function(spec)
    try:
        proto, _ = tf2onnx.convert.from_function(forward, [spec], opset=OPSET)
    except Exception as exc:
        msg = f"{where}: tf2onnx failed: {type(exc).__name__}: {exc}"
        raise ConversionError(msg) from exc
    placeholders = concrete.inputs[len(concrete.inputs) - len(concrete.captured_inputs) :]
    captured = {
        tensor.name: value.numpy()
        for tensor, value in zip(placeholders, concrete.captured_inputs, strict=True)
        if tensor.dtype != tf.resource
    }
    for graph_input in list(proto.graph.input):
        if graph_input.name in captured:
            value = captured[graph_input.name]
            proto.graph.initializer.append(numpy_helper.from_array(value, graph_input.name))
            proto.graph.input.remove(graph_input)
    proto.graph.output[0].name = _rename_output(proto, OUTPUT_NAME)
    if fold_scales:
        fold_column_scales(proto.graph)
    data: bytes = proto.SerializeToString()
    return data


def keras_xla(model: Any, where: str) -> bytes:
    """The ``.keras`` archive of ``model`` compiled with ``jit_compile=True``: the same
    weights, served by the Keras flavor through XLA (see ``keras_flavor.compiled_with_xla``).

    Raises:
        ConversionError: another backend than TensorFlow (JAX compiles with XLA already).
    """
    from lakecast.models.flavors.keras_flavor import import_keras, save

    backend = import_keras().backend.backend()
    if backend != "tensorflow":
        msg = f"{where}: Keras on {backend}: xla is TensorFlow's jit_compile (JAX always jits)"
        raise ConversionError(msg)
    model.compile(jit_compile=True)  # inference only: the default optimizer is never used
    with tempfile.TemporaryDirectory(prefix="lakecast-xla-") as tmp:
        return save(model, Path(tmp)).read_bytes()


def fold_column_scales(graph: Any) -> int:
    """Fold ``MatMul(Mul(x, s), W)`` with constant per-column scales ``s`` (shape (k,) or
    (1, k)) and constant weights ``W`` (k, n) into ``MatMul(x, s[:, None] * W)``; how many.

    Keras's Normalization is ``(x - mean) * (1 / sqrt(variance))``, an elementwise pass over
    the whole batch before the first Dense layer: 18 % of ONNX Runtime's time on 65,536 rows
    here. ``(x * s) @ W`` and ``x @ (s * W)`` are the same sum of the same products, each
    rounded once differently (the new weights are the float32 rounding of the exact product),
    so scores move by float32 rounding only. The subtraction of the mean is kept: folding it
    into the bias would cancel large terms for features far from zero.

    Not before int8 quantisation: it quantises the first product's input with one scale per
    batch and its weights with one per tensor, so the input must be normalised: with the
    scale folded, the worker's features (prices next to 0/1 flags) moved scores by 0.46.
    """
    from onnx import numpy_helper

    constants = {tensor.name: tensor for tensor in graph.initializer}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    outputs = {output.name for output in graph.output}
    producers = {out: node for node in graph.node for out in node.output}
    folded = 0
    for node in list(graph.node):
        if node.op_type != "MatMul" or node.input[1] not in constants:
            continue
        scale_node = producers.get(node.input[0])
        if scale_node is None or scale_node.op_type != "Mul":
            continue
        if consumers.get(scale_node.output[0], 0) != 1 or scale_node.output[0] in outputs:
            continue
        kept = [name for name in scale_node.input if name not in constants]
        scale = [name for name in scale_node.input if name in constants]
        weights = numpy_helper.to_array(constants[node.input[1]])
        if len(kept) != 1 or len(scale) != 1 or weights.ndim != 2:
            continue
        factors = numpy_helper.to_array(constants[scale[0]])
        per_column = factors.ndim <= 2 and factors.shape[-1:] == (factors.size,)
        if not per_column or factors.size != weights.shape[0]:
            continue
        exact = factors.reshape(-1, 1).astype(np.float64) * weights.astype(np.float64)
        name = f"{node.input[1]}/folded_scale"
        graph.initializer.append(numpy_helper.from_array(exact.astype(weights.dtype), name))
        for unused in (node.input[1], scale[0]):
            consumers[unused] -= 1
            if not consumers[unused] and unused not in outputs:
                graph.initializer.remove(constants.pop(unused))
        node.input[:] = [kept[0], name]
        graph.node.remove(scale_node)
        folded += 1
    return folded


def _rename_output(proto: Any, name: str) -> str:
    """Give the graph's first output ``name`` (tf2onnx calls it ``Identity:0``)."""
    old = proto.graph.output[0].name
    for node in proto.graph.node:
        node.output[:] = [name if out == old else out for out in node.output]
        node.input[:] = [name if inp == old else inp for inp in node.input]
    return name


def quantize_int8(data: bytes, where: str) -> bytes:
    """``data``'s graph with its matrix products dynamically quantised to int8 (weights per
    output channel, activations per batch), by ONNX Runtime's quantiser, except the first.

    The first product reads the features themselves: one int8 scale per batch for their
    whole range crushed the typical values under the outliers' (max |score difference|
    0.0509 on the demo's MLP, over the 0.05 bound). Kept in float32 it is 0.0165, and the
    hidden layers, where the arithmetic is, are still int8. A graph with one product
    quantises it.

    Raises:
        ConversionError: the graph has no matrix product (a tree ensemble) to quantise.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = onnx.load_model_from_string(data).graph.node
    products = [node.name for node in nodes if node.op_type in _MATRIX_OPS]  # graph order
    if not products:
        ops = sorted({node.op_type for node in nodes})
        msg = f"{where}: the graph has no matrix products to quantise (its ops: {ops})"
        raise ConversionError(msg)
    with tempfile.TemporaryDirectory(prefix="lakecast-int8-") as tmp:
        source, target = Path(tmp) / "source.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(data)
        quantize_dynamic(
            os.fspath(source),
            os.fspath(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            nodes_to_exclude=products[:1] if len(products) > 1 else [],
        )
        return target.read_bytes()
