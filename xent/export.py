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


class _Graph:
    """An ONNX graph as it is built: its nodes, inputs and constants (initializers)."""

    def __init__(self):
        self.nodes, self.inputs, self.initializers = [], [], []

    def constant(self, name: str, array) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.asarray(array, np.float64), name))
        return name

    def input(self, name: str, kind, shape: list) -> str:
        from onnx import helper

        self.inputs.append(helper.make_tensor_value_info(name, kind, shape))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attributes) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [output], **attributes))
        return output


def to_onnx(model):
    """The ONNX ModelProto of a xent ``model`` (see the module's docstring)."""
    onnx = _onnx()
    from onnx import TensorProto, helper

    _check_exportable(model.encoder)
    graph = _Graph()
    features = _standardised(graph, model.standardizer, _encoded(graph, model))
    _probabilities(graph, model, features)
    outputs = [
        helper.make_tensor_value_info("probabilities", TensorProto.DOUBLE,
                                      [None, model.n_classes]),
        helper.make_tensor_value_info("class_index", TensorProto.INT64, [None]),
    ]
    proto = helper.make_model(
        helper.make_graph(graph.nodes, "xent", graph.inputs, outputs, graph.initializers),
        producer_name="xent", opset_imports=[helper.make_opsetid("", OPSET),
                                             helper.make_opsetid("ai.onnx.ml", ML_OPSET)])
    helper.set_model_props(proto, {"classes": json.dumps(list(model.classes)),
                                   "link": model.link})
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise XentError(f"the model cannot be written as a valid ONNX graph ({exc})") from None
    return proto


def _check_exportable(encoder) -> None:
    """Hashed text has no ONNX operator, and a column may not take an output's name."""
    if encoder is not None and encoder.text is not None:
        raise XentError("the model hashes text columns "
                        f"({', '.join(map(repr, encoder.text.columns))}), which ONNX has no "
                        "operator for: it cannot be exported; use xent predict, or Model.predict "
                        "in Python")
    named = set(encoder.columns) if encoder is not None and encoder.categories else set()
    taken = {"probabilities", "class_index"} & named
    if taken:
        raise XentError(f"a column is named {sorted(taken)[0]!r}, as an output of the ONNX "
                        "graph is: rename it in the data and train again")


def _encoded(graph: _Graph, model) -> str:
    """The graph's inputs and the encoded features (n_samples, n_features): one tensor X for
    numbers only, else one input per column, categorical ones one-hot; fill values put in."""
    from onnx import TensorProto

    encoder = model.encoder
    if encoder is None or not encoder.categories:
        features = graph.input("X", TensorProto.DOUBLE, [None, model.n_features])
        fill = [np.nan] * model.n_features if encoder is None else \
            [float(encoder.fill.get(c, np.nan)) for c in encoder.columns]
        if np.all(np.isnan(fill)):
            return features
        return _filled(graph.nodes, features, graph.constant("xent/fill", fill), "xent/X_filled")
    parts = []
    for i, column in enumerate(encoder.columns):
        part = f"xent/part_{i}"
        if column in encoder.categories:
            graph.input(column, TensorProto.STRING, [None, 1])
            graph.node("OneHotEncoder", [column], f"xent/onehot_{i}", domain="ai.onnx.ml",
                       cats_strings=list(encoder.categories[column]), zeros=1)
            graph.node("Flatten", [f"xent/onehot_{i}"], f"xent/flat_{i}", axis=1)
            graph.node("Cast", [f"xent/flat_{i}"], part, to=TensorProto.DOUBLE)
        else:
            graph.input(column, TensorProto.DOUBLE, [None, 1])
            value = encoder.fill.get(column)
            if value is None:
                graph.node("Identity", [column], part)
            else:
                _filled(graph.nodes, column, graph.constant(f"xent/fill_{i}", [float(value)]),
                        part)
        parts.append(part)
    return graph.node("Concat", parts, "xent/encoded", axis=1)


def _standardised(graph: _Graph, scaler, features: str) -> str:
    """(features - mean) / scale, as the model standardised them (sparse data: no mean)."""
    if scaler is None:
        return features
    if scaler.mean is not None:
        features = graph.node("Sub", [features, graph.constant("xent/mean", scaler.mean)],
                              "xent/centred")
    return graph.node("Div", [features, graph.constant("xent/scale", scaler.scale)],
                      "xent/standardised")


def _probabilities(graph: _Graph, model, features: str) -> None:
    """The outputs: probabilities = link(features W + b), class_index their argmax; the
    sigmoid's one column becomes the two classes' (1 - q, q)."""
    product = graph.node("MatMul", [features, graph.constant("xent/coef", model.coef)],
                         "xent/product")
    logits = graph.node("Add", [product, graph.constant("xent/intercept", model.intercept)],
                        "xent/logits")
    if model.link == "sigmoid":
        q = graph.node("Sigmoid", [logits], "xent/q")
        rest = graph.node("Sub", [graph.constant("xent/one", [1.0]), q], "xent/1-q")
        graph.node("Concat", [rest, q], "probabilities", axis=1)
    else:
        graph.node("Softmax", [logits], "probabilities", axis=1)
    graph.node("ArgMax", ["probabilities"], "class_index", axis=1, keepdims=0)


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
