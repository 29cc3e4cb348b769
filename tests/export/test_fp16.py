"""The float16 pass (export/fp16.py): where an FP16 graph computes in float32, read off the graphs."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("torch")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from simvos_trt.errors import ExportError  # noqa: E402
from simvos_trt.export.fp16 import input_derived, island_of, to_float16  # noqa: E402
from simvos_trt.manifest import Weights  # noqa: E402

F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16


@pytest.fixture(scope="module")
def fp16_export(tmp_path_factory):
    from simvos_trt.config import preset
    from simvos_trt.export.onnx_export import ExportSettings, export_folder
    from simvos_trt.model import random_model

    folder = tmp_path_factory.mktemp("fp16") / "T"
    export_folder(random_model(preset("T"), seed=1), folder, ExportSettings(64, 96, max_objects=3, precision="fp16"),
                  checkpoint=Weights("random", seed=1))
    return folder


def typed(folder, graph):
    model = onnx.shape_inference.infer_shapes(onnx.load(str(folder / f"{graph}.onnx")), strict_mode=True)
    types = {v.name: v.type.tensor_type.elem_type for v in (*model.graph.value_info, *model.graph.input,
                                                             *model.graph.output)}
    types.update({i.name: i.data_type for i in model.graph.initializer})
    return model.graph, types


@pytest.mark.parametrize("graph", ["query_encoder", "memory_encoder", "joint_decoder_2mem"])
def test_islands_compute_in_float32_and_the_rest_in_float16(fp16_export, graph):
    g, types = typed(fp16_export, graph)
    islands = {"LayerNormalization": 0, "Sigmoid": 0, "frame_input": 0, "refinement_weights": 0}
    for node in g.node:
        found = island_of(node)
        floats = [types[t] for t in (*node.input, *node.output) if t and types.get(t) in (F32, F16)]
        if found is not None:
            islands[found[1].name] += 1
            assert F16 not in floats, (node.name, node.op_type)
        elif node.op_type in ("MatMul", "Conv", "ConvTranspose", "Softmax", "Erf"):
            assert floats and set(floats) == {F16}, (node.name, node.op_type)
    expected = {"query_encoder": {"LayerNormalization", "frame_input"},
                "memory_encoder": {"LayerNormalization", "frame_input", "refinement_weights"},
                "joint_decoder_2mem": {"LayerNormalization", "Sigmoid"}}[graph]
    assert {k for k, n in islands.items() if n} == expected  # a renamed scope cannot drop an island silently


def test_the_graph_contract_dtypes(fp16_export):
    want = {"query_encoder": ({"frame": TensorProto.UINT8, "padding": TensorProto.INT64}, {"query": F16}),
            "memory_encoder": ({"frame": TensorProto.UINT8, "padding": TensorProto.INT64, "masks": F32},
                               {"memory": F16}),
            "joint_decoder_2mem": ({"query": F16, "memory_first": F16, "memory_prev": F16}, {"prob": F32}),
            "aggregate": ({"prob": F32}, {"background": F32, "objects": F32, "labels": TensorProto.UINT8})}
    for graph, (inputs, outputs) in want.items():
        g = onnx.load(str(fp16_export / f"{graph}.onnx"), load_external_data=False).graph
        assert {v.name: v.type.tensor_type.elem_type for v in g.input} == inputs
        assert {v.name: v.type.tensor_type.elem_type for v in g.output} == outputs
    g, types = typed(fp16_export, "aggregate")
    assert F16 not in types.values()  # soft aggregation stays float32


def test_weights_are_float16_except_the_islands(fp16_export):
    g, _ = typed(fp16_export, "joint_decoder_2mem")
    tainted, consumers = input_derived(g), {}
    for node in g.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def float32_reader(n):  # an island, Resize's scales, or shape arithmetic (reads no graph input)
        return island_of(n) is not None or n.op_type == "Resize" or not any(i in tainted for i in n.input)

    for init in g.initializer:
        if init.data_type == F32:
            assert all(float32_reader(n) for n in consumers[init.name]), init.name
    kinds = {init.data_type for init in g.initializer if init.name.endswith("weight_f16")}
    assert kinds == {F16}


def _tiny(nodes, inputs, outputs, inits=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_weight_beyond_float16_stops_the_conversion():
    model = _tiny([helper.make_node("MatMul", ["x", "w"], ["y"], name="/m/MatMul")],
                  [helper.make_tensor_value_info("x", F32, [1, 2])], [helper.make_tensor_value_info("y", F32, [1, 2])],
                  [numpy_helper.from_array(np.array([[1e5, 0], [0, 1]], np.float32), "w")])
    with pytest.raises(ExportError, match=r"weight w .*65504.*--precision fp32"):
        to_float16(model)


def test_an_island_output_leaves_as_float16_and_a_sigmoid_stays_float32():
    ln = [numpy_helper.from_array(np.ones(2, np.float32), n) for n in ("s", "b")]
    model = _tiny([helper.make_node("MatMul", ["x", "w"], ["h"], name="/m/MatMul"),
                   helper.make_node("LayerNormalization", ["h", "s", "b"], ["n"], name="/m/ln/LayerNormalization"),
                   helper.make_node("MatMul", ["n", "w"], ["z"], name="/m/MatMul_1"),
                   helper.make_node("Sigmoid", ["z"], ["y"], name="/Sigmoid")],
                  [helper.make_tensor_value_info("x", F32, [1, 2])], [helper.make_tensor_value_info("y", F32, [1, 2])],
                  [numpy_helper.from_array(np.eye(2, dtype=np.float32), "w"), *ln])
    out = to_float16(model)
    onnx.checker.check_model(out, full_check=True)
    assert [n.op_type for n in out.graph.node] == ["MatMul", "Cast", "LayerNormalization", "Cast", "MatMul", "Cast",
                                                    "Sigmoid"]
    assert out.graph.input[0].type.tensor_type.elem_type == F16
    assert out.graph.output[0].type.tensor_type.elem_type == F32
    import onnxruntime as ort

    x = np.array([[0.5, -1.0]], np.float16)
    y = ort.InferenceSession(out.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    n = (x.astype(np.float32) - x.astype(np.float32).mean()) / np.sqrt(x.astype(np.float32).var() + 1e-5) + 1
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-n.astype(np.float16).astype(np.float32))), atol=1e-3)
