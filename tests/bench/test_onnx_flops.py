"""FLOPs of small hand-built ONNX graphs, each against a count worked out by hand."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_flops import COUNTED_OPS, count_graph_flops

from simvos_trt.errors import ExportError

F32 = TensorProto.FLOAT


def weight(name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array(np.zeros(shape, dtype=np.float32), name)


def graph(nodes, inputs, output, dims, initializers=()) -> onnx.ModelProto:
    """A checked model of ``nodes`` with float inputs {name: shape} and one float output ``dims``."""
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, F32, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(output, F32, dims)], initializer=list(initializers),
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def only(op: str, flops: int) -> dict[str, int]:
    return {**dict.fromkeys(COUNTED_OPS, 0), op: flops, "total": flops}


def test_batched_matmul_broadcasts():
    # (2, 1, 3, 4) @ (5, 4, 6): batch (2, 1) x (5,) -> (2, 5); M=3, K=4, N=6.
    # 2 * (2*5) * 3 * 4 * 6 = 1440
    node = helper.make_node("MatMul", ["a", "b"], ["y"])
    m = graph([node], {"a": [2, 1, 3, 4], "b": [5, 4, 6]}, "y", [2, 5, 3, 6])
    assert count_graph_flops(m) == only("MatMul", 1440)


def test_matmul_with_a_vector():
    # (4,) @ (3, 4, 6): the vector is a row, M=1; batch 3: 2 * 3 * 1 * 4 * 6 = 144
    m = graph([helper.make_node("MatMul", ["a", "b"], ["y"])], {"a": [4], "b": [3, 4, 6]}, "y", [3, 6])
    assert count_graph_flops(m) == only("MatMul", 144)


def test_gemm_with_trans_b_and_bias():
    # A (3, 4), B (5, 4) with transB=1 -> N=5: 2 * 3 * 4 * 5 = 120 (the bias C is not counted)
    node = helper.make_node("Gemm", ["a", "w", "c"], ["y"], transB=1, alpha=0.5, beta=2.0)
    m = graph([node], {"a": [3, 4]}, "y", [3, 5], [weight("w", 5, 4), weight("c", 5)])
    assert count_graph_flops(m) == only("Gemm", 120)


def test_gemm_with_trans_a():
    # A (4, 3) with transA=1 -> M=3, K=4; B (4, 7): 2 * 3 * 4 * 7 = 168
    m = graph([helper.make_node("Gemm", ["a", "w"], ["y"], transA=1)], {"a": [4, 3]}, "y", [3, 7],
              [weight("w", 4, 7)])
    assert count_graph_flops(m) == only("Gemm", 168)


def test_conv_with_padding_stride_and_groups():
    # X (1, 4, 7, 7), W (6, 2, 3, 3), group 2, pads 1, stride 2:
    # out side floor((7 + 2 - 3) / 2) + 1 = 4 -> Y (1, 6, 4, 4);
    # 2 * (1*6*4*4) * (2*3*3) = 2 * 96 * 18 = 3456
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], group=2, pads=[1, 1, 1, 1], strides=[2, 2],
                            kernel_shape=[3, 3])
    m = graph([node], {"x": [1, 4, 7, 7]}, "y", [1, 6, 4, 4], [weight("w", 6, 2, 3, 3), weight("b", 6)])
    assert count_graph_flops(m) == only("Conv", 3456)


def test_conv_with_dilation_and_no_padding():
    # X (2, 3, 10, 12), W (5, 3, 3, 3), dilation 2: effective kernel 5, Y (2, 5, 6, 8);
    # 2 * (2*5*6*8) * (3*3*3) = 2 * 480 * 27 = 25920
    node = helper.make_node("Conv", ["x", "w"], ["y"], dilations=[2, 2])
    m = graph([node], {"x": [2, 3, 10, 12]}, "y", [2, 5, 6, 8], [weight("w", 5, 3, 3, 3)])
    assert count_graph_flops(m) == only("Conv", 25920)


def test_conv_transpose_k2_s2():
    # X (2, 3, 4, 5), W (3, 8, 2, 2), stride 2 -> Y (2, 8, 8, 10);
    # per image 2 * Cin * Cout * 4 * Hin * Win = 2 * 3 * 8 * 4 * 20 = 3840, x 2 images = 7680
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], kernel_shape=[2, 2])
    m = graph([node], {"x": [2, 3, 4, 5]}, "y", [2, 8, 8, 10], [weight("w", 3, 8, 2, 2)])
    assert count_graph_flops(m) == only("ConvTranspose", 7680)


def objects_graph() -> onnx.ModelProto:
    """x ('objects', 6) -> Reshape [0, 2, 3] -> ('objects', 2, 3) @ w (3, 4) -> Relu."""
    shape = numpy_helper.from_array(np.array([0, 2, 3], dtype=np.int64), "shape")
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]),
             helper.make_node("MatMul", ["r", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])]
    return graph(nodes, {"x": ["objects", 6]}, "y", ["objects", 2, 4], [shape, weight("w", 3, 4)])


def test_dynamic_objects_dim():
    # objects=5: (5, 2, 3) @ (3, 4): 2 * 5 * 2 * 3 * 4 = 240; Reshape and Relu are free
    m = objects_graph()
    assert count_graph_flops(m, {"objects": 5}) == only("MatMul", 240)
    assert count_graph_flops(m, {"objects": 1, "frames": 3}) == only("MatMul", 48)  # unused names ignored
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "objects"  # the model is untouched


def test_a_missing_dynamic_dim_is_named():
    with pytest.raises(ExportError, match=r"dim_values=\{'objects'"):
        count_graph_flops(objects_graph())
    with pytest.raises(ExportError, match=r"dim_values\['objects'\]"):
        count_graph_flops(objects_graph(), {"objects": 0})


def test_several_ops_add_up():
    # Conv: X (1, 2, 4, 4), W (3, 2, 1, 1) -> (1, 3, 4, 4): 2 * 48 * 2 = 192
    # ConvTranspose: (1, 3, 4, 4), W (3, 1, 2, 2): 2 * 48 * 4 = 384 -> (1, 1, 8, 8)
    # MatMul: (1, 1, 8, 8) @ (8, 2): 2 * 1 * 8 * 8 * 2 = 256
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("ConvTranspose", ["r", "w2"], ["t"], strides=[2, 2]),
             helper.make_node("MatMul", ["t", "w3"], ["y"])]
    m = graph(nodes, {"x": [1, 2, 4, 4]}, "y", [1, 1, 8, 2],
              [weight("w1", 3, 2, 1, 1), weight("w2", 3, 1, 2, 2), weight("w3", 8, 2)])
    assert count_graph_flops(m) == {"MatMul": 256, "Gemm": 0, "Conv": 192, "ConvTranspose": 384, "total": 832}


def expand_graph() -> onnx.ModelProto:
    """The exporter's ``x.expand(B, -1, -1)``: a shape computed by Shape/Equal/Where, then a MatMul.

    x (1, 3, 4) expanded to (objects, 3, 4) @ w (4, 5).
    """
    ints = {"minus1": [-1, -1, -1], "ones": [1, 1, 1], "zero": [0], "tail": [-1, -1]}
    consts = [numpy_helper.from_array(np.array(v, dtype=np.int64), k) for k, v in ints.items()]
    nodes = [
        helper.make_node("Shape", ["masks"], ["ms"]), helper.make_node("Gather", ["ms", "zero"], ["b"]),
        helper.make_node("Concat", ["b", "tail"], ["want"], axis=0),
        helper.make_node("Equal", ["want", "minus1"], ["free"]),
        helper.make_node("Where", ["free", "ones", "want"], ["shape"]),
        helper.make_node("Expand", ["x", "shape"], ["e"]), helper.make_node("MatMul", ["e", "w"], ["y"]),
    ]
    return graph(nodes, {"x": [1, 3, 4], "masks": ["objects", 1, 8, 8]}, "y", ["objects", 3, 5],
                 [*consts, weight("w", 4, 5)])


def test_shapes_computed_at_run_time():
    # objects=1: (1, 3, 4) @ (4, 5): 2 * 1 * 3 * 4 * 5 = 120. ONNX's data propagation leaves the
    # Expand's first dim unknown; onnxruntime's symbolic shape inference resolves it.
    pytest.importorskip("onnxruntime")
    assert count_graph_flops(expand_graph(), {"objects": 1}) == only("MatMul", 120)
    assert count_graph_flops(expand_graph(), {"objects": 3}) == only("MatMul", 360)


def test_counted_ops_in_control_flow_are_refused():
    body = helper.make_graph([helper.make_node("MatMul", ["a", "a"], ["z"])], "body", [],
                             [helper.make_tensor_value_info("z", F32, [2, 2])])
    node = helper.make_node("If", ["cond"], ["y"], then_branch=body, else_branch=body)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
                                        helper.make_tensor_value_info("a", F32, [2, 2])],
                          [helper.make_tensor_value_info("y", F32, [2, 2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ExportError, match="control flow"):
        count_graph_flops(m)
