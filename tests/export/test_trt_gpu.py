"""Engines of a tiny export against ONNX Runtime (needs TensorRT 10, cuda-python and an NVIDIA GPU).

Not run on the project's build machines (no GPU there): every test here skips with the
reason. What they check where they run: each graph builds, FP16 engines (LayerNorm in
float32) stay close to the float32 ONNX graphs, float32 engines match them tightly, the
aggregate engine is float32 in either set, and a rebuild reuses the recorded engines.
"""

from __future__ import annotations

import numpy as np
import pytest

from simvos_trt.errors import MissingDependencyError
from simvos_trt.export.trt_env import GPUUnavailableError, runtime_info


def _missing() -> str | None:
    try:
        runtime_info()
    except (MissingDependencyError, GPUUnavailableError) as exc:
        return f"needs TensorRT and an NVIDIA GPU ({exc})"
    return None


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_missing() is not None, reason=str(_missing()))]

H, W, MAX_OBJECTS = 32, 48, 3


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny export (L=1, token refinement) with fp16 and fp32 engines built."""
    pytest.importorskip("torch")
    from simvos_trt.config import SimVOSConfig, preset
    from simvos_trt.export.engine_cache import BuildSettings
    from simvos_trt.export.onnx_export import ExportSettings, export_folder
    from simvos_trt.export.trt_build import build_engines
    from simvos_trt.model import random_model

    config = SimVOSConfig(**{**preset("T").to_dict(), "train_grid": preset("T").train_grid, "layer_index": 1})
    out = tmp_path_factory.mktemp("gpu") / "exp"
    export_folder(random_model(config, seed=1), out, ExportSettings(H, W, max_objects=MAX_OBJECTS),
                  checkpoint={"kind": "random", "path": None, "sha256": "random"})
    for precision in ("fp16", "fp32"):
        build_engines(out, BuildSettings(precision=precision, workspace_mib=1024))
    return out


def run_engine(engine, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One synchronous run with device buffers from cuda.bindings (the runtime backend does better)."""
    import tensorrt as trt
    from cuda.bindings import runtime as cudart

    def check(result):
        assert int(result[0]) == 0, result[0]
        return result[1] if len(result) > 1 else None

    context = engine.create_execution_context()
    stream = check(cudart.cudaStreamCreate())
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    buffers, outputs = [], {}
    try:
        for name in names:
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                context.set_input_shape(name, inputs[name].shape)
        for name in names:
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            host = (np.ascontiguousarray(inputs[name], dtype=dtype) if is_input
                    else np.empty(tuple(context.get_tensor_shape(name)), dtype=dtype))
            ptr = check(cudart.cudaMalloc(max(host.nbytes, 1)))
            buffers.append(ptr)
            context.set_tensor_address(name, int(ptr))
            if is_input:
                check(cudart.cudaMemcpy(ptr, host.ctypes.data, host.nbytes,
                                        cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
            else:
                outputs[name] = (ptr, host)
        assert context.execute_async_v3(int(stream))
        check(cudart.cudaStreamSynchronize(stream))
        for ptr, host in outputs.values():
            check(cudart.cudaMemcpy(host.ctypes.data, ptr, host.nbytes,
                                    cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost))
    finally:
        for ptr in buffers:
            cudart.cudaFree(ptr)
        cudart.cudaStreamDestroy(stream)
    return {name: host for name, (_, host) in outputs.items()}


def graph_inputs(folder, objects: int) -> dict[str, dict[str, np.ndarray]]:
    """Realistic inputs per graph: the decoders get the encoders' outputs (from ONNX Runtime)."""
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(objects)
    sess = {g: ort.InferenceSession(str(folder / f"{g}.onnx"), providers=["CPUExecutionProvider"])
            for g in ("query_encoder", "memory_encoder")}
    frame = {"frame": rng.integers(0, 256, (1, H, W, 3), dtype=np.uint8), "padding": np.zeros(4, np.int64)}
    masks = rng.random((objects, 1, H, W), dtype=np.float32)
    query = sess["query_encoder"].run(None, frame)[0]
    memory = sess["memory_encoder"].run(None, {**frame, "masks": masks})[0]
    return {"query_encoder": frame, "memory_encoder": {**frame, "masks": masks},
            "joint_decoder_1mem": {"query": query, "memory_first": memory},
            "joint_decoder_2mem": {"query": query, "memory_first": memory,
                                   "memory_prev": memory[::-1].copy()},
            "aggregate": {"prob": rng.random((objects, 1, H, W), dtype=np.float32)}}


def onnx_outputs(folder, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(folder / f"{graph}.onnx"), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, inputs), strict=True))


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / max(np.linalg.norm(b.astype(np.float64)), 1e-12))


@pytest.mark.parametrize("objects", [1, 2, MAX_OBJECTS])
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_engines_match_onnx_runtime(folder, precision, objects):
    from simvos_trt.export.trt_build import load_engine

    for graph, inputs in graph_inputs(folder, objects).items():
        want = onnx_outputs(folder, graph, inputs)
        loaded = load_engine(folder, graph, precision)
        got = run_engine(loaded.engine, inputs)
        assert set(got) == set(want), graph
        float32_engine = precision == "fp32" or graph == "aggregate"
        for name, ref in want.items():
            assert got[name].shape == ref.shape and got[name].dtype == ref.dtype, (graph, name)
            if ref.dtype == np.uint8:  # labels: argmax of float32 aggregation
                assert np.mean(got[name] == ref) > (0.999 if float32_engine else 0.98), (graph, name)
            elif float32_engine:
                np.testing.assert_allclose(got[name], ref, rtol=1e-3, atol=1e-4, err_msg=f"{graph}.{name}")
            elif name == "prob":
                assert np.abs(got[name] - ref).max() < 0.05, (graph, name)
            else:
                assert relative_error(got[name], ref) < 2e-2, (graph, name)


def test_rebuild_reuses_the_recorded_engines(folder, capsys):
    from simvos_trt.cli.build import main

    assert main([str(folder), "--workspace", "1024"]) == 0
    assert "0 built, 5 reused" in capsys.readouterr().out
    assert (folder / "timing.cache").stat().st_size > 0


def test_fp16_engines_pin_layernorm(folder):
    import onnx

    from simvos_trt.export.engine_cache import EngineEntry
    from simvos_trt.manifest import read_manifest

    manifest = read_manifest(folder)
    entries = {g: EngineEntry.from_dict(e.engines["fp16"]) for g, e in manifest.graphs.items()}
    for graph in ("query_encoder", "memory_encoder", "joint_decoder_1mem", "joint_decoder_2mem"):
        nodes = onnx.load(str(folder / f"{graph}.onnx"), load_external_data=False).graph.node
        assert entries[graph].float32_layers == sum(n.op_type == "LayerNormalization" for n in nodes) > 0
    assert entries["aggregate"].float32_layers == 0 and entries["aggregate"].plan.compute == "fp32"
