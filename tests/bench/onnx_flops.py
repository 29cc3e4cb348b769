"""A test helper: FLOPs of an ONNX graph, counted from its shapes after ONNX shape inference, to check
``simvos_trt.bench.costs`` against the exported graphs.

Only the ops that do multiply-adds are counted, a multiply-add being 2 FLOPs:

- ``MatMul`` (numpy semantics, batch dims broadcast): 2 * prod(batch) * M * K * N;
- ``Gemm``: 2 * M * K * N (``transA``/``transB`` honoured; the bias C, alpha and beta
  are element-wise and not counted);
- ``Conv``: 2 * prod(Y.shape) * prod(W.shape[1:]), i.e. 2 * N * Cout * prod(out) *
  (Cin / group) * prod(kernel), whatever the padding, stride and dilation;
- ``ConvTranspose``: 2 * prod(X.shape) * prod(W.shape[1:]), i.e. 2 * N * Cin *
  prod(in) * (Cout / group) * prod(kernel): every input element meets every kernel
  tap (k2 s2: 2 * Cin * Cout * 4 * Hin * Win per image).

Everything else (element-wise ops, normalisations, Softmax, Resize, biases) is free,
matching ``costs``. Dynamic dims (``objects``) are substituted by ``dim_values``
before inference. Shapes come from ONNX shape inference (with data propagation); when
that leaves a counted op's shape unresolved (shapes computed at run time, e.g. the
exporter's ``expand(B, -1, -1)`` at B=1), onnxruntime's symbolic shape inference is
tried (if onnxruntime is installed; imported only then). Only the main graph is
counted: a counted op inside a control-flow subgraph (If/Loop/Scan) raises
``ExportError``; model-local functions are inlined.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import onnx.inliner

from simvos_trt.errors import ExportError

log = logging.getLogger(__name__)

COUNTED_OPS = ("MatMul", "Gemm", "Conv", "ConvTranspose")

Shape = tuple[int, ...]
Shapes = dict[str, tuple[int | str | None, ...]]


class _MissingDims(ExportError):
    """A dynamic dim of the graph's inputs was needed and not given: no other inference can help."""


def _dim_params(model: onnx.ModelProto) -> set[str]:
    """The named (dynamic) dims the graph's inputs and outputs declare."""
    values = [*model.graph.input, *model.graph.output]
    return {d.dim_param for v in values for d in v.type.tensor_type.shape.dim if d.dim_param}


def _substitute(model: onnx.ModelProto, dim_values: dict[str, int]) -> onnx.ModelProto:
    """A copy of ``model`` with the named dynamic dims fixed in its inputs and outputs, its
    intermediate shapes (``value_info``) dropped for re-inference, local functions inlined.

    Names the graph does not use are ignored, so one ``dim_values`` serves every stage
    graph; a dim that is needed and not given is reported by ``_ShapeTable.static``.
    """
    for name, value in dim_values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ExportError(f"dim_values[{name!r}]: got {value!r}, expected an int >= 1")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.value_info[:]  # stale intermediate shapes (unk__ dims) would survive re-inference
    for v in [*out.graph.input, *out.graph.output]:
        for d in v.type.tensor_type.shape.dim:
            if d.dim_param in dim_values:
                d.dim_value = dim_values[d.dim_param]  # clears dim_param (a oneof)
    if out.functions:
        out = onnx.inliner.inline_local_functions(out)
    return out


@dataclass(frozen=True)
class _ShapeTable:
    """Tensor shapes after inference (None or a name for unknown dims) and the graph's own dim names."""

    shapes: Shapes
    declared: frozenset[str]

    @classmethod
    def of(cls, graph: onnx.GraphProto, declared: set[str]) -> _ShapeTable:
        shapes: Shapes = {t.name: tuple(int(d) for d in t.dims) for t in graph.initializer}
        for v in [*graph.input, *graph.value_info, *graph.output]:
            tt = v.type.tensor_type
            if tt.HasField("shape"):
                shapes[v.name] = tuple(
                    d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim
                )
        for node in graph.node:
            for a in node.attribute:
                if node.op_type == "Constant" and a.name == "value":
                    shapes[node.output[0]] = tuple(int(d) for d in a.t.dims)
        return cls(shapes, frozenset(declared))

    def static(self, node: onnx.NodeProto, i: int, output: bool = False) -> Shape:
        """The static shape of the node's ``i``-th input (or output)."""
        name = node.output[i] if output else node.input[i]
        where = f"{node.op_type} node {node.name!r}"
        shape = self.shapes.get(name)
        if shape is None:
            raise ExportError(f"{where}: the shape of {name!r} is unknown after shape inference; "
                                 "fold constants first (onnx-graphsurgeon fold_constants, as "
                                 "simvos_trt.export does)")
        known = [d for d in shape if isinstance(d, int)]
        if len(known) == len(shape):
            return tuple(known)
        unknown = [d for d in shape if not isinstance(d, int)]
        missing = sorted({d for d in unknown if d in self.declared})
        if missing:
            sizes = ", ".join(f"{d!r}: 2" for d in missing)
            raise _MissingDims(f"{where}: {name!r} has shape {list(shape)} with dynamic dims {missing}; "
                               f"give their sizes, e.g. dim_values={{{sizes}}}")
        raise ExportError(f"{where}: {name!r} has shape {list(shape)} with unknown dims {unknown}; shape "
                             "inference could not resolve them (shapes computed at run time): fold constants "
                             "first (onnx-graphsurgeon fold_constants, as simvos_trt.export does), or "
                             "install onnxruntime, whose symbolic shape inference is then tried")


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return default


def _matmul(node: onnx.NodeProto, shapes: _ShapeTable) -> int:
    a, b = shapes.static(node, 0), shapes.static(node, 1)
    a2 = (1, *a) if len(a) == 1 else a  # numpy: a vector is a row, its M=1 dropped after
    b2 = (*b, 1) if len(b) == 1 else b
    if a2[-1] != b2[-2]:
        raise ExportError(f"MatMul node {node.name!r}: inner dims differ, {list(a)} @ {list(b)}")
    try:
        batch = np.broadcast_shapes(a2[:-2], b2[:-2])
    except ValueError:
        raise ExportError(f"MatMul node {node.name!r}: batch dims do not broadcast, "
                             f"{list(a)} @ {list(b)}") from None
    return 2 * math.prod(batch) * a2[-2] * a2[-1] * b2[-1]


def _gemm(node: onnx.NodeProto, shapes: _ShapeTable) -> int:
    a, b = shapes.static(node, 0), shapes.static(node, 1)
    M, K = (a[1], a[0]) if _attr(node, "transA", 0) else a
    N = b[0] if _attr(node, "transB", 0) else b[1]
    return 2 * M * K * N


def _conv(node: onnx.NodeProto, shapes: _ShapeTable) -> int:
    y, weight = shapes.static(node, 0, output=True), shapes.static(node, 1)
    return 2 * math.prod(y) * math.prod(weight[1:])


def _conv_transpose(node: onnx.NodeProto, shapes: _ShapeTable) -> int:
    x, weight = shapes.static(node, 0), shapes.static(node, 1)
    return 2 * math.prod(x) * math.prod(weight[1:])


_COUNTERS: dict[str, Callable[[onnx.NodeProto, _ShapeTable], int]] = {
    "MatMul": _matmul, "Gemm": _gemm, "Conv": _conv, "ConvTranspose": _conv_transpose,
}


def _check_no_subgraph_ops(nodes: Sequence[onnx.NodeProto]) -> None:
    for node in nodes:
        for a in node.attribute:
            for g in [a.g] if a.HasField("g") else list(a.graphs):
                inner = [n for n in g.node if n.op_type in _COUNTERS]
                if inner:
                    raise ExportError(f"{node.op_type} node {node.name!r} holds {inner[0].op_type} ops in "
                                         "a subgraph; control flow is not supported (its trip count is "
                                         "not static)")
                _check_no_subgraph_ops(g.node)


def count_graph_flops(model: onnx.ModelProto, dim_values: dict[str, int] | None = None) -> dict[str, int]:
    """FLOPs of one run of ``model``, by op type.

    Args:
        model: the graph (weights may be external and unloaded: only shapes are read).
        dim_values: sizes of its dynamic dims by name, e.g. ``{"objects": 2}``; names
            the graph does not use are ignored.
    Returns:
        ``{"MatMul": ..., "Gemm": ..., "Conv": ..., "ConvTranspose": ..., "total": ...}``
        (every counted op type present, zero when absent).
    Raises:
        ExportError: a counted op's operand shape is unknown or dynamic after
            substitution (the message names the dim to give), a ``dim_values`` size is
            not a positive int, or a counted op sits inside control flow.
    """
    fixed = _substitute(model, dict(dim_values or {}))
    _check_no_subgraph_ops(fixed.graph.node)
    declared = _dim_params(fixed)
    try:
        return _count(onnx.shape_inference.infer_shapes(fixed, data_prop=True), declared)
    except _MissingDims:
        raise
    except ExportError as onnx_error:
        symbolic = _symbolic_inference(fixed)
        if symbolic is None:
            raise
        try:
            return _count(symbolic, declared)
        except ExportError as symbolic_error:
            raise symbolic_error from onnx_error


def _count(inferred: onnx.ModelProto, declared: set[str]) -> dict[str, int]:
    shapes = _ShapeTable.of(inferred.graph, declared)
    counts = dict.fromkeys(COUNTED_OPS, 0)
    for node in inferred.graph.node:
        if node.op_type in _COUNTERS and node.domain in ("", "ai.onnx"):
            counts[node.op_type] += _COUNTERS[node.op_type](node, shapes)
    counts["total"] = sum(counts.values())
    return counts


def _symbolic_inference(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """onnxruntime's symbolic shape inference, or None when it is missing or fails.

    ONNX's own data propagation does not follow every shape computation the TorchScript
    exporter emits (``expand(B, -1, -1)`` becomes Shape/Equal/Where/Expand); this one does.
    """
    from simvos_trt.export.shapes import infer_symbolic_shapes

    try:
        return infer_symbolic_shapes(model)
    except Exception as exc:  # no onnxruntime/sympy, or incomplete: keep the ONNX inference's error
        log.debug("onnxruntime symbolic shape inference failed: %s", exc)
        return None
