"""The TensorRT-readiness checker on tiny graphs built with onnx.helper: one that passes, one per broken rule."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

from simvos_trt.cli.export import summary_table
from simvos_trt.errors import ExportError
from simvos_trt.export.check import RULES, check_file, check_model, trt_op_list

RULE_IDS = [rule for rule, _, _ in RULES]
OUR_OPS = ("MatMul Gemm Conv ConvTranspose LayerNormalization Softmax Where Equal ArgMax Resize Sigmoid Erf "
           "ReduceMax Concat Reshape Transpose Slice Gather Expand Cast Mul Add Sub Div Log Clip ReduceProd").split()


def tensor(name, shape, dtype=T.FLOAT):
    return h.make_tensor_value_info(name, dtype, shape)


def const(name, values, dtype=None):
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def model(nodes, inputs, outputs, inits=(), *, opset=17, value_info=(), domains=()):
    graph = h.make_graph(nodes, "g", inputs, outputs, list(inits), value_info=list(value_info))
    opsets = [h.make_opsetid("", opset), *(h.make_opsetid(d, 1) for d in domains)]
    return h.make_model(graph, opset_imports=opsets, ir_version=9)


X = tensor("x", ["objects", 8, 16])
Y = tensor("y", ["objects", 8, 16])


def valid_model(opset=17):
    """MatMul -> LayerNormalization -> Softmax over an (objects, 8, 16) batch."""
    rng = np.random.default_rng(0)
    nodes = [h.make_node("MatMul", ["x", "w"], ["xw"], name="matmul"),
             h.make_node("LayerNormalization", ["xw", "ln_scale", "ln_bias"], ["ln"], name="norm", epsilon=1e-6),
             h.make_node("Softmax", ["ln"], ["y"], name="softmax", axis=-1)]
    inits = [const("w", rng.standard_normal((16, 16)) * 0.1, np.float32),
             const("ln_scale", np.ones(16), np.float32), const("ln_bias", np.zeros(16), np.float32)]
    return model(nodes, [X], [Y], inits, opset=opset)


def batch_derived_model():
    """Shapes ONNX inference leaves unnamed but that depend on the object batch only.

    Expand to (Shape(x)[0], 1, 1), Range(0, B + 1) (an index range
    over [background, objects]), Resize with constant scales and Resize with ``sizes`` made
    of Shape(x)[:2] and a constant (H, W), as torch exports F.interpolate(size=...).
    """
    nodes = [
        h.make_node("Shape", ["x"], ["x_shape"], name="shape"),
        h.make_node("Slice", ["x_shape", "zero1", "one1"], ["batch"], name="batch"),
        h.make_node("Concat", ["batch", "ones"], ["expand_shape"], name="expand_shape", axis=0),
        h.make_node("Expand", ["pos", "expand_shape"], ["pos_b"], name="expand"),
        h.make_node("Add", ["x", "pos_b"], ["xp"], name="add_pos"),
        h.make_node("Unsqueeze", ["xp", "one1"], ["x4"], name="unsqueeze"),
        h.make_node("Resize", ["x4", "", "scales"], ["up"], name="resize_scales", mode="linear"),
        h.make_node("Shape", ["up"], ["up_shape"], name="up_shape"),
        h.make_node("Slice", ["up_shape", "zero1", "two1"], ["nc"], name="nc"),
        h.make_node("Concat", ["nc", "hw"], ["sizes"], name="sizes", axis=0),
        h.make_node("Resize", ["up", "", "", "sizes"], ["y"], name="resize_sizes", mode="linear"),
        h.make_node("Squeeze", ["batch"], ["b"], name="b"),
        h.make_node("Add", ["b", "one"], ["b1"], name="b1"),
        h.make_node("Range", ["zero", "b1", "one"], ["ids"], name="range"),
    ]
    inits = [const("zero1", [0]), const("one1", [1]), const("two1", [2]), const("ones", [1, 1]),
             const("pos", np.zeros((1, 8, 16)), np.float32), const("scales", [1, 1, 2, 2], np.float32),
             const("hw", [8, 16]), const("zero", 0), const("one", 1)]
    outputs = [tensor("y", ["objects", 1, 8, 16]), tensor("ids", [None], T.INT64)]
    return model(nodes, [X], outputs, inits)


def failed(report):
    return {c.rule for c in report.checks if not c.passed}


def names(report, rule):
    return {v.node for v in report.violations_of(rule)}


def test_op_list_has_a_source_and_the_ops_our_graphs_use():
    data = trt_op_list()
    assert data["repo"] == "onnx/onnx-tensorrt" and data["path"] == "docs/operators.md"
    assert len(data["commit"]) == 40 and data["commit"] in data["source"]
    assert data["tensorrt_version"].startswith("10.")
    missing = [op for op in OUR_OPS if op not in data["ops"]]
    assert not missing, missing
    # truthful: the parser supports NonZero and ScatterND (we forbid them in a separate rule)
    assert {"NonZero", "ScatterND", "TopK", "If", "Loop"} <= set(data["ops"])
    assert {"Unique", "Compress", "SequenceAt", "SequenceConstruct"} <= set(data["unsupported"])
    assert not set(data["ops"]) & set(data["unsupported"]) and len(data["ops"]) == len(set(data["ops"]))


def test_valid_graph_passes_every_rule():
    m = valid_model()
    report = check_model(m)
    assert report.ok, report.format_violations()
    assert [c.rule for c in report.checks] == RULE_IDS and all(c.passed for c in report.checks)
    checked = {c.rule: c.checked for c in report.checks}
    assert checked["trt-supported-ops"] == 3 and checked["fp16-range"] == 3 and checked["static-shapes"] == 4
    assert report.format_violations() == "no violations"
    # ONNX Runtime runs it with any object count
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    for b in (1, 3):
        (y,) = sess.run(None, {"x": np.ones((b, 8, 16), np.float32)})
        assert y.shape == (b, 8, 16)


def test_batch_derived_dims_pass():
    """Dims ONNX's inference cannot name but that are functions of the batch (objects + 1, ...) pass."""
    pytest.importorskip("sympy")
    m = batch_derived_model()
    inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True, data_prop=True)
    unnamed = {vi.name for vi in [*inferred.graph.value_info, *inferred.graph.output]
               for d in vi.type.tensor_type.shape.dim if not d.HasField("dim_value") and d.dim_param != "objects"}
    assert {"ids", "up"} <= unnamed  # ONNX's inference loses the batch: the case the fallback is for
    report = check_model(m)
    assert report.ok, report.format_violations()


def nonzero():
    return model([h.make_node("NonZero", ["x"], ["y"], name="nz")], [X], [tensor("y", [3, None], T.INT64)])


def loop():
    body = h.make_graph([h.make_node("Identity", ["cond_in"], ["cond_out"], name="body_cond"),
                         h.make_node("Add", ["acc_in", "acc_in"], ["acc_out"], name="body_add")], "body",
                        [tensor("i", [], T.INT64), tensor("cond_in", [], T.BOOL), tensor("acc_in", ["objects", 8, 16])],
                        [tensor("cond_out", [], T.BOOL), tensor("acc_out", ["objects", 8, 16])])
    node = h.make_node("Loop", ["trips", "cond", "x"], ["y"], name="loop", body=body)
    return model([node], [X], [Y], [const("trips", 3), const("cond", True)])


def if_():
    then = h.make_graph([h.make_node("Relu", ["x"], ["then_y"], name="then_relu")], "then", [],
                        [tensor("then_y", ["objects", 8, 16])])
    other = h.make_graph([h.make_node("Neg", ["x"], ["else_y"], name="else_neg")], "else", [],
                         [tensor("else_y", ["objects", 8, 16])])
    node = h.make_node("If", ["flag"], ["y"], name="if", then_branch=then, else_branch=other)
    return model([node], [X, tensor("flag", [], T.BOOL)], [Y])


def topk(k_from_input=False, k=4):
    node = h.make_node("TopK", ["x", "k"], ["y", "idx"], name="topk", axis=-1)
    size = 5000 if k >= 3840 else 16
    x = tensor("x", ["objects", size])
    inputs, inits = ([x, tensor("k", [1], T.INT64)], []) if k_from_input else ([x], [const("k", [k])])
    width = None if k_from_input else k
    outputs = [tensor("y", ["objects", width]), tensor("idx", ["objects", width], T.INT64)]
    return model([node], inputs, outputs, inits)


def resize_scales_from_input():
    node = h.make_node("Resize", ["x", "", "s"], ["y"], name="resize", mode="linear")
    inputs = [tensor("x", ["objects", 1, 8, 16]), tensor("s", [4])]
    return model([node], inputs, [tensor("y", ["objects", 1, None, None])])


def with_constant(value, *, as_initializer):
    fill = numpy_helper.from_array(np.full((1, 8, 16), value, np.float32), "fill_value")
    nodes = [h.make_node("Add", ["x", "fill_value"], ["y"], name="scale")]
    if not as_initializer:
        nodes.insert(0, h.make_node("Constant", [], ["fill_value"], name="fill", value=fill))
    return model(nodes, [X], [Y], [fill] if as_initializer else [])


def decomposed_layernorm(opset):
    nodes = [h.make_node("ReduceMean", ["x"], ["mean"], name="mean", axes=[-1]),
             h.make_node("Sub", ["x", "mean"], ["centered"], name="center"),
             h.make_node("Pow", ["centered", "two"], ["sq"], name="square"),
             h.make_node("ReduceMean", ["sq"], ["var"], name="variance", axes=[-1]),
             h.make_node("Add", ["var", "eps"], ["var_eps"], name="add_eps"),
             h.make_node("Sqrt", ["var_eps"], ["std"], name="std"),
             h.make_node("Div", ["centered", "std"], ["y"], name="normalize")]
    return model(nodes, [X], [Y], [const("two", 2.0, np.float32), const("eps", 1e-6, np.float32)], opset=opset)


def argmax_last():
    node = h.make_node("ArgMax", ["x"], ["y"], name="argmax", axis=1, keepdims=0, select_last_index=1)
    return model([node], [X], [tensor("y", ["objects", 16], T.INT64)])


def dynamic_height():
    node = h.make_node("Relu", ["x"], ["y"], name="relu")
    return model([node], [tensor("x", ["objects", "height", 16])], [tensor("y", ["objects", "height", 16])])


def unknown_rank():
    """Squeeze with axes known only at run time: ONNX cannot tell the rank of its output."""
    nodes = [h.make_node("Squeeze", ["x", "axes"], ["squeezed"], name="squeeze"),
             h.make_node("Relu", ["squeezed"], ["y"], name="relu")]
    inputs = [tensor("x", ["objects", 4, 16]), tensor("axes", [1], T.INT64)]
    return model(nodes, inputs, [tensor("y", [None, None])])


def custom_op():
    node = h.make_node("FusedThing", ["x"], ["y"], name="custom", domain="com.example")
    return model([node], [X], [Y], domains=["com.example"])


def unsupported_op():
    node = h.make_node("BitwiseAnd", ["a", "b"], ["y"], name="bitand")
    return model([node], [tensor("a", [4], T.INT32), tensor("b", [4], T.INT32)], [tensor("y", [4], T.INT32)], opset=18)


def scatter_nd():
    node = h.make_node("ScatterND", ["x", "indices", "updates"], ["y"], name="scatter")
    inits = [const("indices", [[0, 1]]), const("updates", np.zeros((1, 16)), np.float32)]
    return model([node], [tensor("x", [2, 8, 16])], [tensor("y", [2, 8, 16])], inits)


def scatter_one_hot():
    """torch's one_hot / scatter_ of an argmax: indices computed from values."""
    nodes = [h.make_node("ArgMax", ["x"], ["idx"], name="argmax", axis=1, keepdims=1),
             h.make_node("ScatterElements", ["zeros", "idx", "ones"], ["y"], name="one_hot", axis=1)]
    inits = [const("zeros", np.zeros((2, 16)), np.float32), const("ones", np.ones((2, 1)), np.float32)]
    return model(nodes, [tensor("x", [2, 16])], [tensor("y", [2, 16])], inits)


# (graph, the rule it breaks, the offending node names, rules that honestly fail too)
BROKEN = {
    "nonzero": (nonzero, "no-forbidden-ops", {"nz"}, {"static-shapes"}),  # its output length is data-dependent
    "loop": (loop, "no-forbidden-ops", {"loop"}, set()),
    "if": (if_, "no-forbidden-ops", {"if"}, set()),
    "topk_k_from_input": (lambda: topk(k_from_input=True), "topk-constant", {"topk"}, {"static-shapes"}),
    "topk_k_4000": (lambda: topk(k=4000), "topk-constant", {"topk"}, set()),
    "resize_scales_from_input": (resize_scales_from_input, "resize-constant", {"resize"}, {"static-shapes"}),
    "minus_inf_constant": (lambda: with_constant(-np.inf, as_initializer=False), "fp16-range", {"fill"}, set()),
    "1e5_initializer": (lambda: with_constant(1e5, as_initializer=True), "fp16-range", {"scale"}, set()),
    "decomposed_layernorm_opset16": (lambda: decomposed_layernorm(16), "layernorm-native", {"<model>", "mean"},
                                     set()),
    "decomposed_layernorm_opset17": (lambda: decomposed_layernorm(17), "layernorm-native", {"mean"}, set()),
    "argmax_select_last_index": (argmax_last, "argmax-first-index", {"argmax"}, set()),
    "dynamic_height": (dynamic_height, "static-shapes", {"<graph input>", "relu"}, set()),
    "unknown_rank": (unknown_rank, "static-shapes", {"squeeze"}, set()),
    "custom_domain_op": (custom_op, "trt-supported-ops", {"custom"}, set()),
    "unsupported_op": (unsupported_op, "trt-supported-ops", {"bitand"}, set()),
    "opset_21": (lambda: valid_model(opset=21), "trt-supported-ops", {"<model>"}, set()),
    "scatter_nd": (scatter_nd, "no-forbidden-ops", {"scatter"}, set()),
    "scatter_elements_one_hot": (scatter_one_hot, "no-forbidden-ops", {"one_hot"}, set()),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_each_broken_graph_fails_exactly_its_rule(case):
    build, rule, nodes, also = BROKEN[case]
    report = check_model(build())
    assert not report.ok
    assert failed(report) == {rule} | also, report.format_violations()
    assert names(report, rule) == nodes, report.format_violations()
    assert all(v.message for v in report.violations)


def test_messages_say_what_and_how_to_fix():
    report = check_model(scatter_nd())
    (v,) = report.violations
    assert v.op_type == "ScatterND" and "x[m] = v" in v.message and "torch.where" in v.message
    (v,) = check_model(with_constant(-np.inf, as_initializer=False)).violations
    assert "'fill_value'" in v.message and "-inf" in v.message and "float32" in v.message
    (v,) = check_model(with_constant(1e5, as_initializer=True)).violations
    assert "100000.0" in v.message and "initializer 'fill_value'" in v.message
    (v,) = check_model(topk(k=4000)).violations
    assert "K = 4000" in v.message and "3840" in v.message
    report = check_model(decomposed_layernorm(17))
    assert "opset >= 17" in report.violations[0].message and "LayerNormalization" in report.violations[0].message
    (v,) = check_model(dynamic_height()).violations_of("static-shapes")[:1]
    assert "'x'" in v.message and "height" in v.message


def test_report_formats():
    report = check_model(argmax_last())
    table = summary_table({"aggregate": report}).splitlines()
    assert table[0].split() == ["rule", "aggregate"]
    assert len(table) == 2 + len(RULE_IDS)
    rows = {line.split()[0]: line.split(maxsplit=1)[1] for line in table[2:]}
    assert rows["argmax-first-index"] == "FAIL (1)" and rows["static-shapes"].startswith("ok (")
    assert report.format_violations().startswith("[argmax-first-index] argmax (ArgMax): select_last_index = 1")
    assert report.violations[0].__dict__["rule"] == "argmax-first-index"  # the CLI's --json uses __dict__


def test_unnamed_nodes_are_named_after_their_output():
    m = argmax_last()
    m.graph.node[0].name = ""
    assert names(check_model(m), "argmax-first-index") == {"<ArgMax -> y>"}


def test_check_file_with_external_data(tmp_path):
    path = tmp_path / "g.onnx"
    onnx.save_model(valid_model(), path, save_as_external_data=True, location="g.weights", size_threshold=0)
    assert (tmp_path / "g.weights").exists()
    assert check_file(path).ok
    broken = tmp_path / "broken.onnx"
    onnx.save_model(with_constant(1e5, as_initializer=True), broken, save_as_external_data=True,
                    location="broken.weights", size_threshold=0)
    report = check_file(str(broken))
    assert failed(report) == {"fp16-range"}  # the values were read from the external file


def test_check_file_errors(tmp_path):
    with pytest.raises(ExportError, match="cannot load"):
        check_file(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(ExportError, match="junk.onnx"):
        check_file(tmp_path / "junk.onnx")


def test_check_model_does_not_modify_the_model():
    m = decomposed_layernorm(17)
    before = m.SerializeToString()
    check_model(m)
    assert m.SerializeToString() == before
