"""Backends: inputs checked against the manifest, the same outputs from ONNX Runtime and torch."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from videos import SMALL, SMALL_MAX_OBJECTS

from simvos_trt.errors import DeviceUnavailableError, InputError, MissingDependencyError
from simvos_trt.manifest import read_manifest
from simvos_trt.runtime import BackendError, backend_options, create_backend
from simvos_trt.runtime.batches import plan_batches
from simvos_trt.runtime.session import decoder_limit, object_limit

H, W = SMALL
C = 192


def stage_inputs(B: int, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    g = np.random.default_rng(seed)
    frame = {"frame": g.integers(0, 256, (1, H, W, 3), dtype=np.uint8),
             "padding": np.array([1, 2, 3, 4], np.int64)}
    query = g.standard_normal((1, 6, C), dtype=np.float32)
    mem = [g.standard_normal((B, 6, C), dtype=np.float32) for _ in range(2)]
    return {"query_encoder": frame,
            "memory_encoder": {**frame, "masks": g.random((B, 1, H, W), dtype=np.float32)},
            "joint_decoder_1mem": {"query": query, "memory_first": mem[0]},
            "joint_decoder_2mem": {"query": query, "memory_first": mem[0], "memory_prev": mem[1]},
            "aggregate": {"prob": g.random((B, 1, H, W), dtype=np.float32)}}


@pytest.fixture(scope="module")
def ort_backend(small_export):
    folder = small_export.folder
    with create_backend("onnxruntime", folder, read_manifest(folder), threads=2) as b:
        yield b


@pytest.fixture(scope="module")
def torch_backend(small_export):
    pytest.importorskip("torch")
    folder = small_export.folder
    with create_backend("torch", folder, read_manifest(folder)) as b:  # weights rebuilt from the seed
        yield b


@pytest.mark.parametrize("B", [1, 2])
def test_torch_and_onnxruntime_agree_per_stage(B, ort_backend, torch_backend):
    tb = torch_backend
    for graph, inputs in stage_inputs(B).items():
        a = ort_backend.run(graph, {k: ort_backend.from_host(v) for k, v in inputs.items()})
        b = tb.run(graph, {k: tb.from_host(v) for k, v in inputs.items()})
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_allclose(ort_backend.to_host(a[k]), tb.to_host(b[k]), atol=1e-4, rtol=1e-4,
                                       err_msg=f"{graph}.{k}")


@pytest.mark.parametrize("graph, change, match", [
    ("query_encoder", {"frame": np.zeros((1, H, W, 3), np.float32)},
     "input frame: got dtype float32, expected uint8"),
    ("query_encoder", {"frame": np.zeros((1, H, W + 16, 3), np.uint8)},
     r"input frame: got shape \(1, 32, 64, 3\), expected \(1, 32, 48, 3\)"),
    ("query_encoder", {"extra": np.zeros(1, np.float32)}, r"got inputs \['extra', 'frame', 'padding'\]"),
    ("joint_decoder_2mem", {"memory_prev": np.zeros((1, 6, C), np.float32)}, "object axis differs"),
    ("joint_decoder_1mem", {"memory_first": np.zeros((3, 6, C), np.float32)},
     r"got shape \(3, 6, 192\), expected \('1\.\.2', 6, 192\)"),
    ("memory_encoder", {"masks": np.zeros((0, 1, H, W), np.float32)}, r"got shape \(0, 1, 32, 48\)"),
])
def test_inputs_are_checked_against_the_manifest(ort_backend, graph, change, match):
    inputs = {**stage_inputs(2)[graph], **change}
    with pytest.raises(InputError, match=match):
        ort_backend.run(graph, inputs)


def test_missing_input_and_unknown_graph(ort_backend):
    with pytest.raises(InputError, match=r"got inputs \['frame'\], expected \['frame', 'padding'\]"):
        ort_backend.run("query_encoder", {"frame": stage_inputs(1)["query_encoder"]["frame"]})
    with pytest.raises(InputError, match="unknown graph"):
        ort_backend.run("decoder", {})


def test_object_limits(ort_backend):
    assert ort_backend.object_limit("joint_decoder_2mem") == SMALL_MAX_OBJECTS
    assert ort_backend.object_limit("aggregate") == 255
    assert ort_backend.run("aggregate", stage_inputs(7)["aggregate"])["objects"].shape == (7, 1, H, W)
    assert decoder_limit(ort_backend) == SMALL_MAX_OBJECTS
    assert plan_batches([False] * 5, decoder_limit(ort_backend)) == ((0, 2, False), (2, 4, False), (4, 5, False))

    class Limited:
        def object_limit(self, graph):
            return 4 if graph == "aggregate" else 2

    assert object_limit(Limited(), token_refinement=False) == 4
    assert "aggregate graph" in object_limit(Limited(), token_refinement=False).reason
    assert object_limit(Limited(), token_refinement=True) == 2
    assert "memory encoder" in object_limit(Limited(), token_refinement=True).reason


def test_decoder_batches_follow_freshness_and_the_limit():
    assert plan_batches([], 3) == ()
    assert plan_batches([True, True, False, True], 3) == ((0, 2, True), (2, 3, False), (3, 4, True))
    assert plan_batches([False] * 7, 3) == ((0, 3, False), (3, 6, False), (6, 7, False))


def test_closed_backend_refuses_to_run(small_export):
    b = create_backend("onnxruntime", small_export.folder, read_manifest(small_export.folder))
    with pytest.raises(BackendError, match="closed"):
        b.run("aggregate", stage_inputs(1)["aggregate"])


def test_unknown_and_unavailable_backends(small_export):
    m = read_manifest(small_export.folder)
    with pytest.raises(InputError, match="unknown backend"):
        create_backend("tflite", small_export.folder, m)
    with pytest.raises((DeviceUnavailableError, MissingDependencyError), match="TensorRT backend"):
        create_backend("tensorrt", small_export.folder, m)
    assert create_backend("auto", small_export.folder, m).name == "onnxruntime"


def test_torch_backend_needs_recorded_weights(small_export, tmp_path):
    pytest.importorskip("torch")
    folder = tmp_path / "export"
    shutil.copytree(small_export.folder, folder)
    data = json.loads((folder / "manifest.json").read_text())
    data["checkpoint"] = {"kind": "official"}  # no path: the weights cannot be found again
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="pass model="):
        create_backend("torch", folder, read_manifest(folder)).open()


def test_backend_options_keeps_what_each_backend_takes():
    """A tool's settings for any backend: the ones given that the chosen backend (or auto's two) takes."""
    settings = {"threads": 2, "max_buffers": 8, "device": None}
    assert backend_options("onnxruntime", **settings) == {"threads": 2}
    assert backend_options("tensorrt", **settings) == {"max_buffers": 8}
    assert backend_options("auto", **settings) == {"threads": 2, "max_buffers": 8}
    assert backend_options("torch", **settings) == {}
    assert backend_options("torch", device="cpu") == {"device": "cpu"}
    assert backend_options("tpu", threads=2) == {}  # create_backend names the unknown backend
