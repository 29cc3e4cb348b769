"""The float16 pass: a traced float32 stage graph -> its FP16 graph, under ``simvos_trt.precision.ISLANDS``
(why the export converts the graph instead of tracing in float16: simvos_trt/export/README.md)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import ExportError
from ..precision import FLOAT32_INPUTS, ISLANDS, Island

F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16
#: Float inputs that are parameters, not data: they keep their type (ONNX requires float32 scales).
_PARAMETER_INPUTS = {"Resize": {1, 2}}
_UNSUPPORTED = {"Constant", "EyeLike", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
                "Bernoulli", "Multinomial", "CastLike"}


def island_of(node: onnx.NodeProto) -> tuple[str, Island] | None:
    """(instance key, island) of a node inside a float32 island, else None."""
    for island in ISLANDS:
        if island.by == "op" and node.op_type == island.name:
            return node.name, island
        if island.by == "scope" and node.name.startswith(f"/{island.name}/"):
            return island.name, island
    return None


def input_derived(graph: onnx.GraphProto) -> set[str]:
    """Tensors computed from the graph's inputs; the rest (``Shape`` onwards, constants) is shape arithmetic."""
    tainted = {i.name for i in graph.input}
    for node in graph.node:
        if node.op_type != "Shape" and any(i in tainted for i in node.input):
            tainted.update(node.output)
    return tainted


class _Rewriter:
    def __init__(self, model: onnx.ModelProto) -> None:
        self.model, self.graph = model, model.graph
        inferred = onnx.shape_inference.infer_shapes(model)
        self.types = {v.name: v.type.tensor_type.elem_type
                      for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)}
        self.inits = {i.name: i for i in self.graph.initializer}
        self.types.update({name: i.data_type for name, i in self.inits.items()})
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.tainted = input_derived(self.graph)
        self.f16_inputs = {i.name for i in self.graph.input
                           if self.types.get(i.name) == F32 and i.name not in FLOAT32_INPUTS}
        self.casts: dict[tuple[str, int], str] = {}
        self.halves: dict[str, str] = {}
        self.nodes: list[onnx.NodeProto] = []

    def region(self, node: onnx.NodeProto) -> tuple[str | None, int, bool]:
        """(island instance or None, the dtype its floats compute in, whether its outputs leave as float16)."""
        found = island_of(node)
        if found is not None:
            return found[0], F32, not found[1].keep_float32
        return None, F16 if any(i in self.tainted for i in node.input) else F32, False

    def cast(self, name: str, to: int) -> str:
        if (name, to) not in self.casts:
            out = f"{name}_as_{'f16' if to == F16 else 'f32'}"
            self.nodes.append(helper.make_node("Cast", [name], [out], name=f"Cast:{out}", to=to))  # in no scope
            self.casts[(name, to)] = out
        return self.casts[(name, to)]

    def half_initializer(self, name: str) -> str:
        if name not in self.halves:
            array = numpy_helper.to_array(self.inits[name])
            with np.errstate(over="ignore"):
                half = array.astype(np.float16)
            if not np.isfinite(half[np.isfinite(array)]).all():
                raise ExportError(f"weight {name} has values beyond float16's range (|x| > 65504): "
                                  f"max |x| = {np.abs(array).max():g}; export with --precision fp32")
            self.halves[name] = f"{name}_f16"
            self.graph.initializer.append(numpy_helper.from_array(half, self.halves[name]))
        return self.halves[name]

    def input_for(self, name: str, want: int, consumer: str | None) -> str:
        """The tensor a consumer computing in ``want`` (inside island ``consumer``) reads for ``name``."""
        if name in self.inits:
            return self.half_initializer(name) if want == F16 else name
        have = F16 if name in self.f16_inputs else F32
        node = self.producer.get(name)
        if node is not None:
            key, have, exits_f16 = self.region(node)
            if exits_f16 and key != consumer:
                name, have = self.cast(name, F16), F16
        return name if have == want else self.cast(name, want)

    def run(self) -> onnx.ModelProto:
        for original in self.graph.node:
            node = onnx.NodeProto()
            node.CopyFrom(original)
            if node.op_type in _UNSUPPORTED:
                raise ExportError(f"node {node.name}: the float16 pass does not handle {node.op_type}")
            key, dtype, _ = self.region(node)
            skip = _PARAMETER_INPUTS.get(node.op_type, set())
            for i, name in enumerate(node.input):
                if name and i not in skip and self.types.get(name) == F32:
                    node.input[i] = self.input_for(name, dtype, key)
            for attr in node.attribute if dtype == F16 else ():  # ops whose output type is an attribute
                if node.op_type == "Cast" and attr.name == "to" and attr.i == F32:
                    attr.i = F16
                elif node.op_type == "ConstantOfShape" and attr.name == "value" and attr.t.data_type == F32:
                    attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16)))
            self.nodes.append(node)  # after the Casts it reads: the order stays topological
        graph = self.graph  # finish: the inputs' and outputs' types, the new nodes, only the used initializers
        for value in graph.input:
            if value.name in self.f16_inputs:
                value.type.tensor_type.elem_type = F16
        for value in graph.output:
            if self.types.get(value.name) == F32:
                _, dtype, exits_f16 = self.region(self.producer[value.name])
                assert not exits_f16, f"{value.name}: an island output needs its exit cast"
                value.type.tensor_type.elem_type = dtype
        del graph.node[:]
        graph.node.extend(self.nodes)
        used = {i for n in graph.node for i in n.input}
        kept = [i for i in graph.initializer if i.name in used]
        del graph.initializer[:]
        graph.initializer.extend(kept)
        del graph.value_info[:]
        return self.model


def to_float16(model: onnx.ModelProto) -> onnx.ModelProto:
    """The FP16 graph of a float32 stage graph (``model``, modified in place); ExportError for an op the pass
    does not handle, or a weight beyond float16's range."""
    return _Rewriter(model).run()
