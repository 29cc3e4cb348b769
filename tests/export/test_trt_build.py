"""Engines built by a real NVIDIA builder, TensorRT-RTX, on this CPU-only machine (ahead of time, for SM80).

What the parsed networks show: strongly typed, float16 compute layers and float32
normalisation in FP16 graphs, no float16 anywhere in FP32 graphs, the graph contract's
input and output dtypes and the object-axis profile. Nothing here runs an engine (that
needs a GPU: tests marked ``gpu``).
"""

from __future__ import annotations

import json

import pytest

trt = pytest.importorskip("tensorrt_rtx", reason="needs TensorRT-RTX (pip install 'simvos-trt[rtx]')")
pytest.importorskip("torch")

from simvos_trt.cli.build import EXIT_MISSING, main  # noqa: E402
from simvos_trt.errors import ExportError  # noqa: E402
from simvos_trt.export.trt_build import network_from_onnx  # noqa: E402
from simvos_trt.manifest import Weights, read_manifest  # noqa: E402
from simvos_trt.trt.engine import DTYPES, make_logger, network_io  # noqa: E402
from simvos_trt.trt.library import select_library  # noqa: E402
from simvos_trt.trt.records import EngineEntry  # noqa: E402

#: The graph contract's dtypes of an FP16 export (float16 tokens, float32 masks and probabilities).
FP16_IO = {"frame": "uint8", "padding": "int64", "masks": "float32", "query": "float16", "memory": "float16",
           "memory_first": "float16", "memory_prev": "float16", "prob": "float32", "background": "float32",
           "objects": "float32", "labels": "uint8"}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """The T variant at 64x96 (max 3 objects) as fp16/fp32 graphs with uint8/float frame inputs."""
    from simvos_trt.config import preset
    from simvos_trt.export.onnx_export import ExportSettings, export_folder
    from simvos_trt.model import random_model

    select_library("tensorrt_rtx")
    model = random_model(preset("T"), seed=1)
    root = tmp_path_factory.mktemp("trt")
    folders = {}
    for precision in ("fp16", "fp32"):
        for uint8 in (True, False):
            folder = root / f"{precision}-{'uint8' if uint8 else 'float'}"
            export_folder(model, folder, ExportSettings(64, 96, max_objects=3, uint8_input=uint8, precision=precision),
                          checkpoint=Weights("random", seed=1))
            folders[(precision, uint8)] = folder
    return folders


def parse(folder, graph):
    errors: list[str] = []
    logger = make_logger(errors)
    builder = trt.Builder(logger)
    network, parser = network_from_onnx(builder, folder / f"{graph}.onnx", logger)
    return network, (builder, parser)


def layer_types(layer):
    inputs = [layer.get_input(i) for i in range(layer.num_inputs)]
    return ([DTYPES.get(t.dtype.name, t.dtype.name) for t in inputs if t is not None],
            [DTYPES.get(layer.get_output_type(i).name) for i in range(layer.num_outputs)])


@pytest.mark.slow
@pytest.mark.parametrize("uint8", [True, False])
def test_fp16_graphs_parse_strongly_typed_with_float32_normalisation(exports, uint8):
    folder = exports[("fp16", uint8)]
    manifest = read_manifest(folder)
    for graph, entry in manifest.graphs.items():
        network, keep = parse(folder, graph)
        assert network.get_flag(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        io = network_io(network)
        want = {**FP16_IO, "frame": "uint8" if uint8 else "float16"}
        assert {name: dtype for name, (_, dtype, _) in io.items()} == {n: want[n] for n in io}, graph
        assert io == {t.name: (t in entry.inputs, t.dtype, tuple(-1 if d == "objects" else d for d in t.shape))
                      for t in (*entry.inputs, *entry.outputs)}
        counts = {"norm": 0, "half": 0}
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            ins, outs = layer_types(layer)
            if layer.type == trt.LayerType.NORMALIZATION:
                assert ins[0] == outs[0] == "float32", (graph, layer.name, ins, outs)
                counts["norm"] += 1
            if layer.type in (trt.LayerType.MATRIX_MULTIPLY, trt.LayerType.CONVOLUTION, trt.LayerType.DECONVOLUTION):
                assert outs == ["float16" if graph != "aggregate" else "float32"], (graph, layer.name, outs)
            counts["half"] += "float16" in outs
        if graph == "aggregate":
            assert counts["half"] == 0
        else:
            assert counts["norm"] > 0 and counts["half"] > 50, (graph, counts)


@pytest.mark.slow
def test_fp32_graphs_have_no_float16_tensor(exports):
    folder = exports[("fp32", False)]
    for graph in read_manifest(folder).graphs:
        network, keep = parse(folder, graph)
        for i in range(network.num_layers):
            ins, outs = layer_types(network.get_layer(i))
            assert "float16" not in ins + outs, (graph, network.get_layer(i).name)


def test_the_parser_rejects_an_op_on_uint8_before_the_cast(tmp_path):
    """The bug the frame input had: TensorRT takes no op but Cast on a uint8 tensor; the error names the node."""
    import onnx
    from onnx import TensorProto, helper

    select_library("tensorrt_rtx")
    nodes = [helper.make_node("Transpose", ["frame"], ["t"], name="/frame_input/Transpose", perm=[0, 3, 1, 2]),
             helper.make_node("Cast", ["t"], ["out"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("frame", TensorProto.UINT8, [1, 4, 4, 3])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 4, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "g.onnx"))
    with pytest.raises(ExportError, match=r"node 0 '/frame_input/Transpose' \(Transpose\).*UInt8"):
        parse(tmp_path, "g")


def test_exported_frames_are_cast_before_any_other_op(exports):
    import onnx

    for folder in (exports[("fp16", True)], exports[("fp32", True)]):
        graph = onnx.load(str(folder / "query_encoder.onnx"), load_external_data=False).graph
        assert [n.op_type for n in graph.node if "frame" in n.input] == ["Cast"]


@pytest.mark.slow
def test_simvos_build_writes_five_engines_for_sm80_and_reuses_them(exports, capsys):
    folder = exports[("fp16", True)]
    assert main([str(folder), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [e["status"] for e in doc["engines"]] == ["built"] * 5
    assert doc["target"]["library"] == "tensorrt_rtx" and doc["target"]["compute_capabilities"] == [[8, 0]]
    assert doc["verification"] is None  # no GPU here to run them
    manifest = read_manifest(folder)
    for graph, entry in manifest.graphs.items():
        engine = EngineEntry.from_dict(entry.engine)
        assert (folder / engine.file).stat().st_size == engine.bytes > 100_000
        assert engine.plan.precision == entry.precision and engine.target.version == trt.__version__
        assert engine.layers.get("float16", 0) > (0 if graph != "aggregate" else -1)
    profile = EngineEntry.from_dict(manifest.graphs["joint_decoder_2mem"].engine).plan.profile
    assert {k: (v.min[0], v.opt[0], v.max[0]) for k, v in profile.items()} == {
        "memory_first": (1, 2, 3), "memory_prev": (1, 2, 3)}
    assert "float16" not in EngineEntry.from_dict(manifest.graphs["aggregate"].engine).layers
    assert main([str(folder)]) == 0
    out = capsys.readouterr().out
    assert out.count(" cached ") == 5 and "verification skipped: no usable NVIDIA GPU" in out


@pytest.mark.slow
def test_targets_and_forced_rebuilds(exports, capsys):
    folder = exports[("fp32", False)]
    args = [str(folder), "--graphs", "aggregate", "query_encoder", "--compute-capability", "8.6", "8.0", "--json"]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["target"]["compute_capabilities"] == [[8, 0], [8, 6]]
    assert main(args) == 0 and [e["status"] for e in json.loads(capsys.readouterr().out)["engines"]] == ["cached"] * 2
    assert main([*args, "--force"]) == 0
    assert [e["status"] for e in json.loads(capsys.readouterr().out)["engines"]] == ["built"] * 2


@pytest.mark.parametrize("option, words", [("--version-compatible", "libnvinfer_lean"),
                                           ("--hardware-compatible", "hardware compatibility")])
def test_options_tensorrt_rtx_lacks_are_refused_in_one_line(exports, capsys, option, words):
    assert main([str(exports[("fp16", True)]), "--library", "tensorrt_rtx", option]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_a_library_that_is_not_installed_exits_3(exports, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    assert main([str(exports[("fp16", True)]), "--library", "tensorrt"]) == EXIT_MISSING
    assert "pip install 'simvos-trt[gpu]'" in capsys.readouterr().err


def test_a_wrong_folder_is_named_before_any_library(capsys, monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    (tmp_path / "file").write_text("x")
    for path, message in ((tmp_path / "nope", "does not exist; run simvos-export"),
                          (tmp_path / "file", "is a file, not an export folder")):
        assert main([str(path), "--library", "tensorrt"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "TensorRT" not in err
