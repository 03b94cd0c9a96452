"""Graphs for the tests of the core: small ONNX graphs written by hand (no torch, no export;
a network's real export is training.graph.to_graph)."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from anomaly.model import Graph
from anomaly.model.graph import INPUT, OUTPUT


def _graph(name: str, constant: object, op: str, n_features: int, window: int | None) -> Graph:
    """A one-node graph: the input `op` a constant (a TensorProto), for windows of any length
    unless `window` is given."""
    shape: list[str | int] = ["batch", "window" if window is None else window, n_features]
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["k"], value=constant),
         helper.make_node(op, [INPUT, "k"], [OUTPUT])],
        name,
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, shape)],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return Graph(model.SerializeToString(), window or 1, n_features)


def scaled(factor: float, n_features: int = 1, window: int | None = None) -> Graph:
    """Reconstructs each scaled window as `factor` times itself (0: as zeros, so that with an
    identity scaler a window-1 record's score is the mean of its squared values); windows of
    any length unless `window` is given."""
    constant = helper.make_tensor("factor", TensorProto.FLOAT, [], [factor])
    return _graph("scaled", constant, "Mul", n_features, window)


def zeros(n_features: int = 1) -> Graph:
    """Reconstructs every window (of any length) as zeros."""
    return scaled(0.0, n_features)


def mixing(matrix: list[list[float]], window: int | None = None) -> Graph:
    """Reconstructs each scaled record (a row of the window) as `row @ matrix`: a feature
    rebuilt from the others, as an autoencoder does (its impute is then known by hand)."""
    n = len(matrix)
    flat = [float(v) for row in matrix for v in row]
    constant = helper.make_tensor("matrix", TensorProto.FLOAT, [n, n], flat)
    return _graph("mixing", constant, "MatMul", n, window)
