"""Test doubles for the TensorRT engine build (no tests here; imported by the test_trt_* modules).

- ``make_export_folder``: a small export folder (tiny ONNX graphs made with onnx.helper and
  a manifest), fast and without torch.
- ``FakeTensorRT``: the slice of the TensorRT 10 Python API that ``simvos_trt.export.trt_build``
  uses, recording what the build asked for. Its parser reads the ONNX file (inputs, nodes),
  so network inputs and LayerNormalization layers come from the real graph. The code under
  test is type-checked against the real API (tensorrt-stubs) by test_trt_typing.py.
- ``fake_cudart``: cuda.bindings.runtime reporting one GPU, or a CUDA error.
"""

from __future__ import annotations

import enum
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from simvos_trt.config import preset
from simvos_trt.export.engine_cache import RuntimeInfo
from simvos_trt.manifest import MANIFEST, GraphEntry, Manifest, TensorSpec, sha256_file, write_json_atomic

A100 = RuntimeInfo("10.13.0.35", "NVIDIA A100-SXM4-80GB", (8, 0), "Linux-x86_64")

#: name -> (inputs, node op types, outputs); "objects" marks the object axis.
GRAPHS: dict[str, tuple[list[tuple[str, str, list[Any]]], list[str], list[tuple[str, str, list[Any]]]]] = {
    "query_encoder": ([("frame", "uint8", [1, 32, 48, 3]), ("padding", "int64", [4])],
                      ["Cast", "LayerNormalization", "MatMul", "LayerNormalization"],
                      [("query", "float32", [1, 6, 192])]),
    "joint_decoder_1mem": ([("query", "float32", [1, 6, 192]),
                            ("memory_first", "float32", ["objects", 32, 192])],
                           ["LayerNormalization", "MatMul", "Softmax", "LayerNormalization", "Sigmoid"],
                           [("prob", "float32", ["objects", 1, 32, 48])]),
    "aggregate": ([("prob", "float32", ["objects", 1, 32, 48])], ["ReduceProd", "Log", "Softmax", "ArgMax"],
                  [("background", "float32", [1, 1, 32, 48]), ("objects", "float32", ["objects", 1, 32, 48]),
                   ("labels", "uint8", [1, 32, 48])]),
}


def _onnx_graph(name: str, extra_op: str | None = None) -> Any:
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    types_ = {"float32": TensorProto.FLOAT, "uint8": TensorProto.UINT8, "int64": TensorProto.INT64}
    inputs, ops, outputs = GRAPHS[name]
    ops = ops + ([extra_op] if extra_op else [])
    nodes = [helper.make_node(op, [inputs[0][0] if i == 0 else f"t{i - 1}"], [f"t{i}"],
                              name=f"{op.lower()}_{i}") for i, op in enumerate(ops)]
    nodes += [helper.make_node("Identity", [f"t{len(ops) - 1}"], [out[0]]) for out in outputs]
    graph = helper.make_graph(nodes, name,
                              [helper.make_tensor_value_info(n, types_[t], s) for n, t, s in inputs],
                              [helper.make_tensor_value_info(n, types_[t], s) for n, t, s in outputs])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def make_export_folder(folder: Path, max_objects: int = 4, extra_op: dict[str, str] | None = None) -> Path:
    """An export folder with the graphs of ``GRAPHS`` and a manifest that verifies."""
    onnx = pytest.importorskip("onnx")
    folder.mkdir(parents=True, exist_ok=True)
    graphs = {}
    for name, (inputs, _, outputs) in GRAPHS.items():
        path = folder / f"{name}.onnx"
        onnx.save(_onnx_graph(name, (extra_op or {}).get(name)), str(path))
        graphs[name] = GraphEntry(path.name, sha256_file(path),
                                  tuple(TensorSpec(n, t, tuple(s)) for n, t, s in inputs),
                                  tuple(TensorSpec(n, t, tuple(s)) for n, t, s in outputs))
    manifest = Manifest(config=preset("T"), height=32, width=48, uint8_input=True, max_objects=max_objects,
                        opset=17, checkpoint={"kind": "random", "path": None, "sha256": "random"},
                        graphs=graphs)
    write_json_atomic(folder / MANIFEST, manifest.to_dict())
    return folder


# --------------------------------------------------------------------------- fake TensorRT


class _Enum(enum.Enum):
    def __repr__(self) -> str:
        return f"{type(self).__name__}.{self.name}"


LayerType = _Enum("LayerType", "NORMALIZATION MATRIX_MULTIPLY ELEMENTWISE OTHER")
DataType = _Enum("DataType", "FLOAT HALF")
MemoryPoolType = _Enum("MemoryPoolType", "WORKSPACE")
HardwareCompatibilityLevel = _Enum("HardwareCompatibilityLevel", "NONE AMPERE_PLUS")
Severity = _Enum("Severity", "INTERNAL_ERROR ERROR WARNING INFO VERBOSE")
_LAYER_OF_OP = {"LayerNormalization": LayerType.NORMALIZATION, "MatMul": LayerType.MATRIX_MULTIPLY}


class ILogger:
    INTERNAL_ERROR, ERROR, WARNING = Severity.INTERNAL_ERROR, Severity.ERROR, Severity.WARNING
    INFO, VERBOSE = Severity.INFO, Severity.VERBOSE

    def __init__(self) -> None:
        self.initialised = True


class ILayer:
    def __init__(self, type_: Any, name: str) -> None:
        self.type, self.name, self.precision = type_, name, None


class INormalizationLayer(ILayer):
    compute_precision: Any = None


class Tensor:
    def __init__(self, name: str, shape: tuple[int, ...]) -> None:
        self.name, self.shape = name, shape


class Network:
    def __init__(self) -> None:
        self.inputs: list[Tensor] = []
        self.layers: list[ILayer] = []
        self.path = ""

    num_inputs = property(lambda self: len(self.inputs))
    num_layers = property(lambda self: len(self.layers))

    def get_input(self, i: int) -> Tensor:
        return self.inputs[i]

    def get_layer(self, i: int) -> ILayer:
        return self.layers[i]


class ParserError:
    def __init__(self, node: int, name: str, op: str) -> None:
        self._node, self._name, self._op = node, name, op

    def node(self) -> int:
        return self._node

    def node_name(self) -> str:
        return self._name

    def node_operator(self) -> str:
        return self._op

    def desc(self) -> str:
        return f"no importer registered for op: {self._op}"

    def code(self) -> str:
        return "ErrorCode.UNSUPPORTED_NODE"


class TimingCache:
    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)

    def serialize(self) -> bytes:
        return self.data


class Profile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[Any, Any, Any]] = {}

    def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
        self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))


class Config:
    def __init__(self) -> None:
        self.flags: set[str] = {"TF32"}  # TensorRT enables TF32 by default
        self.pool: dict[Any, int] = {}
        self.profiles: list[Profile] = []
        self.builder_optimization_level = 3
        self.hardware_compatibility_level = HardwareCompatibilityLevel.NONE
        self.timing_cache: TimingCache | None = None
        self.timing_cache_loads: list[bytes] = []

    def set_flag(self, flag: Any) -> None:
        self.flags.add(flag.name)

    def clear_flag(self, flag: Any) -> None:
        self.flags.discard(flag.name)

    def set_memory_pool_limit(self, pool: Any, size: int) -> None:
        self.pool[pool] = size

    def add_optimization_profile(self, profile: Profile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, data: bytes) -> TimingCache:
        self.timing_cache_loads.append(bytes(data))
        return TimingCache(data)

    def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
        if cache.data.startswith(b"other-gpu"):
            return False
        self.timing_cache = cache
        return True


class FakeTensorRT(types.ModuleType):
    """``tensorrt`` as far as trt_build uses it; ``builds`` records each build's settings."""

    def __init__(self, version: str = "10.13.0.35", flags: tuple[str, ...] | None = None) -> None:
        super().__init__("tensorrt")
        self.__version__ = version
        self.builds: list[dict[str, Any]] = []
        self.fail: set[str] = set()  # graph names whose build returns None
        self.ILogger, self.ILayer, self.INormalizationLayer = ILogger, ILayer, INormalizationLayer
        self.ParserError = ParserError
        self.LayerType, self.MemoryPoolType = LayerType, MemoryPoolType
        self.HardwareCompatibilityLevel = HardwareCompatibilityLevel
        self.float32, self.float16 = DataType.FLOAT, DataType.HALF
        names = flags or ("FP16", "OBEY_PRECISION_CONSTRAINTS", "TF32", "VERSION_COMPATIBLE")
        self.BuilderFlag = types.SimpleNamespace(**{n: types.SimpleNamespace(name=n) for n in names})
        self.Dims = tuple
        fake = self

        class Builder:
            def __init__(self, logger: ILogger) -> None:
                assert getattr(logger, "initialised", False), "the logger must call ILogger.__init__"
                self.logger = logger

            def create_network(self, flags: int = 0) -> Network:
                assert flags == 0, "weakly typed network expected"
                return Network()

            def create_builder_config(self) -> Config:
                return Config()

            def create_optimization_profile(self) -> Profile:
                return Profile()

            def build_serialized_network(self, network: Network, config: Config) -> bytes | None:
                graph = Path(network.path).stem
                fake.builds.append({"graph": graph, "config": config, "network": network})
                if graph in fake.fail:
                    self.logger.log(Severity.ERROR, f"out of memory building {graph}")
                    return None
                assert config.timing_cache is not None
                config.timing_cache.data += f"[{graph}]".encode()
                return f"plan:{graph}:{sorted(config.flags)}".encode()

        class OnnxParser:
            def __init__(self, network: Network, logger: ILogger) -> None:
                self.network, self.errors = network, []

            def parse_from_file(self, path: str) -> bool:
                import onnx

                model = onnx.load(path, load_external_data=False)
                self.network.path = path
                for v in model.graph.input:
                    dims = v.type.tensor_type.shape.dim
                    shape = tuple(-1 if d.dim_param else d.dim_value for d in dims)
                    self.network.inputs.append(Tensor(v.name, shape))
                for i, node in enumerate(model.graph.node):
                    if node.op_type == "Unsupported":
                        self.errors.append(ParserError(i, node.name, node.op_type))
                    layer_type = _LAYER_OF_OP.get(node.op_type, LayerType.OTHER)
                    self.network.layers.append(ILayer(layer_type, node.name))
                return not self.errors

            num_errors = property(lambda self: len(self.errors))

            def get_error(self, i: int) -> ParserError:
                return self.errors[i]

        class Runtime:
            def __init__(self, logger: ILogger) -> None:
                self.engine_host_code_allowed = False

            def deserialize_cuda_engine(self, data: bytes) -> Any:
                return types.SimpleNamespace(data=data, host_code_allowed=self.engine_host_code_allowed)

        self.Builder, self.OnnxParser, self.Runtime = Builder, OnnxParser, Runtime


class CudaError(int):
    @property
    def name(self) -> str:
        return "cudaSuccess" if self == 0 else "cudaErrorNoDevice"


def fake_cudart(gpu: RuntimeInfo | None = A100) -> types.ModuleType:
    """cuda.bindings.runtime with one GPU (``gpu``), or none (``gpu=None``: cudaErrorNoDevice)."""
    mod = types.ModuleType("cuda.bindings.runtime")
    ok, err = CudaError(0), CudaError(100)
    if gpu is None:
        mod.cudaGetDeviceCount = lambda: (err, None)
    else:
        props = types.SimpleNamespace(name=gpu.gpu_name.encode() + b"\0\0\0", major=gpu.compute_capability[0],
                                      minor=gpu.compute_capability[1])
        mod.cudaGetDeviceCount = lambda: (ok, 1)
        mod.cudaGetDeviceProperties = lambda device: (ok, props)
    mod.cudaGetErrorString = lambda e: (ok, b"no CUDA-capable device is detected")
    return mod


def install_fakes(monkeypatch: pytest.MonkeyPatch, gpu: RuntimeInfo | None = A100,
                  trt: FakeTensorRT | None = None) -> FakeTensorRT:
    """Make ``import tensorrt`` and the CUDA runtime bindings return the fakes; returns the fake TensorRT."""
    trt = trt or FakeTensorRT(gpu.trt_version if gpu else "10.13.0.35")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", fake_cudart(gpu))
    monkeypatch.setattr("simvos_trt.export.trt_env.host_platform", lambda: A100.platform)
    return trt
