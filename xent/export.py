"""A model as an ONNX graph, so that onnxruntime (or any ONNX runtime) gives xent's
probabilities without xent: the encoding of the feature columns, the standardisation, the
linear layer and the link.

Inputs: a model trained on numbers only takes one float64 tensor ``X`` (n_samples,
n_features) in the model's column order. A model with categorical columns takes one input per
column, named as the column, (n_samples, 1): float64 for a numeric column, string for a
categorical one (one-hot by ``ai.onnx.ml.OneHotEncoder``; a level training never saw, or a
missing one, encodes as all zeros). Missing numbers (NaN) take the model's fill values, as in
xent. Outputs: ``probabilities`` (n_samples, n_classes) float64 and ``class_index``
(n_samples,) int64, the index into the model's classes (stored in the graph's metadata).
"""

from __future__ import annotations

import json

import numpy as np

from .errors import XentError

OPSET = 17
ML_OPSET = 3


def _onnx():
    try:
        import onnx
    except ImportError:
        raise XentError("exporting to ONNX needs the onnx package: pip install "
                        "'xent[onnx]'") from None
    return onnx


def to_onnx(model):
    """The ONNX ModelProto of a xent ``model`` (see the module's docstring)."""
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    nodes, inputs, initializers = [], [], []

    def constant(name, array):
        initializers.append(numpy_helper.from_array(np.asarray(array, np.float64), name))
        return name

    encoder = model.encoder
    if encoder is not None and encoder.text is not None:
        raise XentError("the model hashes text columns "
                        f"({', '.join(map(repr, encoder.text.columns))}), which ONNX has no "
                        "operator for: it cannot be exported; use xent predict, or Model.predict "
                        "in Python")
    categorical = encoder is not None and bool(encoder.categories)
    taken = {"probabilities", "class_index"} & set(encoder.columns if categorical else ())
    if taken:
        raise XentError(f"a column is named {sorted(taken)[0]!r}, as an output of the ONNX "
                        "graph is: rename it in the data and train again")
    if not categorical:
        inputs.append(helper.make_tensor_value_info("X", TensorProto.DOUBLE,
                                                    [None, model.n_features]))
        features = "X"
        fill = [np.nan] * model.n_features if encoder is None else \
            [float(encoder.fill.get(c, np.nan)) for c in encoder.columns]
        if not np.all(np.isnan(fill)):
            features = _filled(nodes, "X", constant("xent/fill", fill), "xent/X_filled")
    else:
        parts = []
        for i, column in enumerate(encoder.columns):
            if column in encoder.categories:
                inputs.append(helper.make_tensor_value_info(column, TensorProto.STRING,
                                                            [None, 1]))
                nodes += [
                    helper.make_node("OneHotEncoder", [column], [f"xent/onehot_{i}"],
                                     domain="ai.onnx.ml",
                                     cats_strings=list(encoder.categories[column]), zeros=1),
                    helper.make_node("Flatten", [f"xent/onehot_{i}"], [f"xent/flat_{i}"], axis=1),
                    helper.make_node("Cast", [f"xent/flat_{i}"], [f"xent/part_{i}"],
                                     to=TensorProto.DOUBLE),
                ]
            else:
                inputs.append(helper.make_tensor_value_info(column, TensorProto.DOUBLE,
                                                            [None, 1]))
                value = encoder.fill.get(column)
                if value is None:
                    nodes.append(helper.make_node("Identity", [column], [f"xent/part_{i}"]))
                else:
                    _filled(nodes, column, constant(f"xent/fill_{i}", [float(value)]),
                            f"xent/part_{i}")
            parts.append(f"xent/part_{i}")
        nodes.append(helper.make_node("Concat", parts, ["xent/encoded"], axis=1))
        features = "xent/encoded"
    scaler = model.standardizer
    if scaler is not None:
        if scaler.mean is not None:
            nodes.append(helper.make_node("Sub", [features, constant("xent/mean", scaler.mean)],
                                          ["xent/centred"]))
            features = "xent/centred"
        nodes.append(helper.make_node("Div", [features, constant("xent/scale", scaler.scale)],
                                      ["xent/standardised"]))
        features = "xent/standardised"
    nodes += [
        helper.make_node("MatMul", [features, constant("xent/coef", model.coef)],
                         ["xent/product"]),
        helper.make_node("Add", ["xent/product", constant("xent/intercept", model.intercept)],
                         ["xent/logits"]),
    ]
    if model.link == "sigmoid":  # probabilities (1 - q, q) of the two classes
        nodes += [
            helper.make_node("Sigmoid", ["xent/logits"], ["xent/q"]),
            helper.make_node("Sub", [constant("xent/one", [1.0]), "xent/q"], ["xent/1-q"]),
            helper.make_node("Concat", ["xent/1-q", "xent/q"], ["probabilities"], axis=1),
        ]
    else:
        nodes.append(helper.make_node("Softmax", ["xent/logits"], ["probabilities"], axis=1))
    nodes.append(helper.make_node("ArgMax", ["probabilities"], ["class_index"], axis=1,
                                  keepdims=0))
    outputs = [
        helper.make_tensor_value_info("probabilities", TensorProto.DOUBLE,
                                      [None, model.n_classes]),
        helper.make_tensor_value_info("class_index", TensorProto.INT64, [None]),
    ]
    graph = helper.make_graph(nodes, "xent", inputs, outputs, initializers)
    proto = helper.make_model(graph, producer_name="xent", opset_imports=[
        helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)])
    helper.set_model_props(proto, {"classes": json.dumps(list(model.classes)),
                                   "link": model.link})
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise XentError(f"the model cannot be written as a valid ONNX graph ({exc})") from None
    return proto


def _filled(nodes, name: str, fill: str, out: str) -> str:
    """``out`` = ``name`` with NaN replaced by ``fill`` (broadcast per column); NaN in a column
    without a fill value stays NaN, as xent refuses such rows."""
    from onnx import helper

    nodes += [
        helper.make_node("IsNaN", [name], [f"{out}/missing"]),
        helper.make_node("IsNaN", [fill], [f"{out}/no_fill"]),
        helper.make_node("Not", [f"{out}/no_fill"], [f"{out}/has_fill"]),
        helper.make_node("And", [f"{out}/missing", f"{out}/has_fill"], [f"{out}/replace"]),
        helper.make_node("Where", [f"{out}/replace", fill, name], [out]),
    ]
    return out


def save_onnx(model, path) -> None:
    """Write ``model`` as an ONNX file at ``path`` (atomically)."""
    from .atomic import atomic_open

    proto = to_onnx(model)
    with atomic_open(path, "wb") as handle:
        handle.write(proto.SerializeToString())
