"""The exported graphs against the PyTorch reference (ONNX Runtime, CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from goldens import GOLDEN_CASES, load_golden  # noqa: E402

from simvos_trt import processing  # noqa: E402
from simvos_trt.config import SimVOSConfig  # noqa: E402
from simvos_trt.errors import SimVOSError  # noqa: E402
from simvos_trt.export.onnx_export import ExportSettings, export_folder  # noqa: E402
from simvos_trt.manifest import GRAPHS, Weights, read_manifest  # noqa: E402
from simvos_trt.model import load_official_checkpoint, propagate, random_model  # noqa: E402
from simvos_trt.model.stages import stage_modules  # noqa: E402


@pytest.fixture(scope="module")
def golden_exports(tmp_path_factory, tiny_checkpoint):
    """One export folder per golden case, at the case's padded size."""
    folders = {}
    for name in GOLDEN_CASES:
        case = load_golden(name)
        H, W = case.meta["padded_size"]
        model = load_official_checkpoint(tiny_checkpoint, case.config())
        out = tmp_path_factory.mktemp("exp") / name
        export_folder(model, out, ExportSettings(H, W, max_objects=4), checkpoint=Weights("official"))
        folders[name] = (out, model)
    return folders


class OrtDriver:
    """A minimal propagation through the exported graphs (the real runtime is simvos_trt.runtime)."""

    def __init__(self, folder):
        self.manifest = read_manifest(folder)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        self.sessions = {n: ort.InferenceSession(str(folder / g.file), opts, providers=["CPUExecutionProvider"])
                         for n, g in self.manifest.graphs.items()}

    def run(self, name, **inputs):
        sess = self.sessions[name]
        return sess.run(None, inputs)

    def propagate(self, frames, first_mask):
        T, H, W, _ = frames.shape
        pad = processing.padding_for(H, W)
        padding = np.array([pad.left, pad.right, pad.top, pad.bottom], dtype=np.int64)
        ids = processing.object_ids(first_mask)
        masks = processing.pad(processing.one_hot(first_mask, ids), pad)[:, None]

        def frame(t):
            return processing.pad(frames[t].transpose(2, 0, 1), pad).transpose(1, 2, 0)[None].copy()

        out = np.empty((T, len(ids) + 1, H, W), np.float32)
        bg, obj, _ = self.run("aggregate", prob=masks)
        out[0] = processing.unpad(np.concatenate([bg, obj])[:, 0], pad)
        (first,) = self.run("memory_encoder", frame=frame(0), padding=padding, masks=masks)
        prev = None
        for t in range(1, T):
            (query,) = self.run("query_encoder", frame=frame(t), padding=padding)
            if prev is None:
                (prob,) = self.run("joint_decoder_1mem", query=query, memory_first=first)
            else:
                (prob,) = self.run("joint_decoder_2mem", query=query, memory_first=first, memory_prev=prev)
            bg, obj, labels = self.run("aggregate", prob=prob)
            out[t] = processing.unpad(np.concatenate([bg, obj])[:, 0], pad)
            np.testing.assert_array_equal(labels[0], np.concatenate([bg, obj])[:, 0].argmax(0))
            (prev,) = self.run("memory_encoder", frame=frame(t), padding=padding, masks=obj)
        return out


@pytest.mark.parametrize("name", GOLDEN_CASES)
def test_graphs_reproduce_the_golden_videos(name, golden_exports):
    folder, model = golden_exports[name]
    case = load_golden(name)
    prob = OrtDriver(folder).propagate(case.frames, case.first_mask)
    assert np.abs(prob - case.prob).max() <= 1e-4
    assert np.abs(prob - propagate(model, case.frames, case.first_mask)).max() <= 1e-4


@pytest.mark.parametrize("objects", [1, 3])
def test_stages_match_reference_on_random_inputs(objects, golden_exports):
    folder, model = golden_exports["tiny_L2_tr_odd"]
    driver = OrtDriver(folder)
    m = driver.manifest
    H, W = m.height, m.width
    g = np.random.default_rng(objects)
    frame_u8 = g.integers(0, 256, (1, H, W, 3), dtype=np.uint8)
    padding = np.array([2, 3, 5, 6], dtype=np.int64)
    masks = g.random((objects, 1, H, W), dtype=np.float32) / objects
    mods = stage_modules(model, H, W, uint8_input=True)
    with torch.no_grad():
        ref_q = mods["query_encoder"](torch.from_numpy(frame_u8), torch.from_numpy(padding)).numpy()
        ref_m = mods["memory_encoder"](torch.from_numpy(frame_u8), torch.from_numpy(padding),
                                       torch.from_numpy(masks)).numpy()
        ref_p = mods["joint_decoder_2mem"](torch.from_numpy(ref_q), torch.from_numpy(ref_m),
                                           torch.from_numpy(ref_m)).numpy()
    (q,) = driver.run("query_encoder", frame=frame_u8, padding=padding)
    (mem,) = driver.run("memory_encoder", frame=frame_u8, padding=padding, masks=masks)
    (p,) = driver.run("joint_decoder_2mem", query=ref_q, memory_first=ref_m, memory_prev=ref_m)
    np.testing.assert_allclose(q, ref_q, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(mem, ref_m, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(p, ref_p, atol=1e-5)
    assert mem.shape == (objects, m.memory_tokens, 192)


def test_uint8_input_equals_host_normalisation(golden_exports):
    """In-graph normalisation + zeroed padding band == the official normalise-then-zero-pad."""
    folder, model = golden_exports["tiny_L2_tr_odd"]
    driver = OrtDriver(folder)
    case = load_golden("tiny_L2_tr_odd")
    pad = processing.padding_for(*case.first_mask.shape)
    frame = processing.pad(case.frames[1].transpose(2, 0, 1), pad).transpose(1, 2, 0)[None].copy()
    (q,) = driver.run("query_encoder", frame=frame,
                      padding=np.array([pad.left, pad.right, pad.top, pad.bottom], np.int64))
    host = torch.from_numpy(processing.pad(processing.normalize(case.frames[1]), pad))[None]
    with torch.no_grad():
        ref = model.encode_query(host, model.position_embedding((8, 13))).numpy()
    np.testing.assert_allclose(q, ref, atol=1e-5, rtol=1e-5)


def test_manifest_and_metadata(golden_exports):
    folder, model = golden_exports["tiny_L4_tr"]
    m = read_manifest(folder)
    assert m.config == model.config and (m.height, m.width) == (128, 192) and m.max_objects == 4
    assert set(m.graphs) == {"query_encoder", "memory_encoder", "joint_decoder_1mem", "joint_decoder_2mem",
                             "aggregate"}
    mem = m.graphs["memory_encoder"]
    assert [(t.name, t.dtype, t.shape) for t in mem.inputs] == [
        ("frame", "uint8", (1, 128, 192, 3)), ("padding", "int64", (4,)),
        ("masks", "float32", ("objects", 1, 128, 192))]
    assert [(t.name, t.shape) for t in mem.outputs] == [("memory", ("objects", 32, 192))]
    assert mem.nodes_final < mem.nodes_exported
    graph = onnx.load(str(folder / "joint_decoder_2mem.onnx"))
    meta = {p.key: p.value for p in graph.metadata_props}
    assert SimVOSConfig.from_dict(json.loads(meta["simvos_trt.config"])) == model.config
    assert meta["simvos_trt.graph"] == "joint_decoder_2mem"
    assert not any(n.op_type in ("NonZero", "ScatterND", "Loop", "If") for n in graph.graph.node)


def test_failed_export_leaves_nothing(tmp_path):
    model = random_model(SimVOSConfig(backbone="tiny", layer_index=1))
    out = tmp_path / "exp"

    def boom(folder):
        assert (folder / "manifest.json").exists()
        raise SimVOSError("simulated failure")

    with pytest.raises(SimVOSError, match="simulated"):
        export_folder(model, out, ExportSettings(32, 48, 2), checkpoint=Weights("random", seed=0), verify=boom)
    assert list(tmp_path.iterdir()) == []


def test_refuses_non_empty_output_without_force(tmp_path):
    (tmp_path / "keep.txt").write_text("user data")
    model = random_model(SimVOSConfig(backbone="tiny", layer_index=1))
    with pytest.raises(SimVOSError, match="--force"):
        export_folder(model, tmp_path, ExportSettings(32, 48, 2), checkpoint=Weights("random", seed=0))
    assert (tmp_path / "keep.txt").read_text() == "user data"


def test_float_input_graphs(tmp_path, tiny_checkpoint):
    """--no-uint8-input: the graphs take the host-normalised, padded float32 frame."""
    case = load_golden("tiny_L4_tr")
    model = load_official_checkpoint(tiny_checkpoint, case.config())
    events = []
    export_folder(model, tmp_path / "f", ExportSettings(128, 192, 2, uint8_input=False), checkpoint=Weights("official"),
                  progress=events.append)
    assert [e.name for e in events] == list(GRAPHS)  # one typed GraphExported per graph, in order
    assert all(e.bytes > 0 and e.seconds >= 0 and e.nodes_final > 0 for e in events)
    driver = OrtDriver(tmp_path / "f")
    spec = driver.manifest.graphs["memory_encoder"].inputs
    assert [(t.name, t.dtype, t.shape) for t in spec] == [("frame", "float32", (1, 3, 128, 192)),
                                                          ("masks", "float32", ("objects", 1, 128, 192))]
    frame = processing.normalize(case.frames[0])[None]
    masks = processing.one_hot(case.first_mask, processing.object_ids(case.first_mask))[:, None]
    (mem,) = driver.run("memory_encoder", frame=frame, masks=masks)
    with torch.no_grad():
        ref = model.encode_memory(torch.from_numpy(frame), torch.from_numpy(masks),
                                  model.position_embedding((8, 12))).numpy()
    np.testing.assert_allclose(mem, ref, atol=1e-4, rtol=1e-4)
