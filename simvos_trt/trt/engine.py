"""Loading a recorded engine, and what a network or engine says about its tensors and layers."""

from __future__ import annotations

import logging
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from ..errors import BackendError
from ..manifest import OBJECTS_AXIS, GraphEntry, Manifest, ManifestError
from .cuda import Cuda
from .library import Library, network_flags, selected, trt
from .plan import CC, DEFAULT_RTX_TARGETS, RTX_TARGETS, BuildSettings, ShapeRange, Target, check_options
from .records import Device, EngineEntry, check_engine, rebuild_command

log = logging.getLogger(__name__)

DTYPES = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8", "INT32": "int32", "INT64": "int64",
          "BOOL": "bool", "UINT8": "uint8"}

TensorIO = dict[str, tuple[bool, str, tuple[int, ...]]]
#: Messages that are expected and harmless: an ahead-of-time build without a GPU (TensorRT-RTX
#: probes CUDA), and the parser's reminder that ``padding`` is int64 (it is).
QUIET = ("CUDA driver version is insufficient", "Make sure input padding has Int64 binding")


def make_logger(errors: list[str]) -> trt.ILogger:
    """A TensorRT logger that forwards to ``logging`` and appends errors to ``errors``."""
    levels = {trt.ILogger.INTERNAL_ERROR: logging.ERROR, trt.ILogger.ERROR: logging.ERROR,
              trt.ILogger.WARNING: logging.WARNING}

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
            level = logging.DEBUG if any(q in msg for q in QUIET) else levels.get(severity, logging.DEBUG)
            if level == logging.ERROR:
                errors.append(msg)
            log.log(level, "TensorRT: %s", msg)

    return _Logger()


def host_platform() -> str:
    return f"{platform.system()}-{platform.machine()}"


def device_here(index: int = 0, cuda: Cuda | None = None) -> Device:
    """The selected TensorRT library and CUDA device ``index``; raises when either is missing."""
    library = selected()
    name, cc = (cuda or Cuda()).gpu(index)
    return Device(library.name, library.version, host_platform(), name, cc)


def build_target(library: Library, settings: BuildSettings, device: int = 0) -> Target:
    """What the engines are built for: the GPU here (TensorRT), or compute capabilities (TensorRT-RTX)."""
    check_options(settings, library.name)
    if not library.ahead_of_time:
        gpu = device_here(device)  # TensorRT builds on the GPU it builds for
        return Target(library.name, library.version, host_platform(), (gpu.compute_capability,), gpu.gpu_name)
    ccs = settings.compute_capabilities or DEFAULT_RTX_TARGETS
    return Target(library.name, library.version, host_platform(), tuple(sorted(set(ccs))))


def network_io(network: trt.INetworkDefinition) -> TensorIO:
    """name -> (is input, numpy dtype name, shape with -1 on dynamic axes) of a network's inputs and outputs."""
    tensors = [(network.get_input(i), True) for i in range(network.num_inputs)]
    tensors += [(network.get_output(i), False) for i in range(network.num_outputs)]
    return {t.name: (is_input, DTYPES.get(t.dtype.name, t.dtype.name), dims(t.shape)) for t, is_input in tensors}


def engine_io(engine: trt.ICudaEngine) -> TensorIO:
    """As ``network_io``, for a deserialized engine."""
    io: TensorIO = {}
    for name in (engine.get_tensor_name(i) for i in range(engine.num_io_tensors)):
        dtype = engine.get_tensor_dtype(name).name
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        io[name] = (is_input, DTYPES.get(dtype, dtype), dims(engine.get_tensor_shape(name)))
    return io


def manifest_io(graph: GraphEntry) -> TensorIO:
    """As ``network_io``, for what the manifest says of ``graph`` (the object axis is the dynamic one)."""
    tensors = [(t, True) for t in graph.inputs] + [(t, False) for t in graph.outputs]
    return {t.name: (is_input, t.dtype, tuple(-1 if d == OBJECTS_AXIS else int(d) for d in t.shape))
            for t, is_input in tensors}


def dims(shape: trt.Dims) -> tuple[int, ...]:
    return tuple(int(shape[j]) for j in range(len(shape)))


def layer_precisions(network: trt.INetworkDefinition) -> dict[str, int]:
    """How many layers write each float type (``float16``, ``float32``) and how many write no float."""
    counts: dict[str, int] = {}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        kinds = {DTYPES.get(layer.get_output_type(j).name, "other") for j in range(layer.num_outputs)}
        key = "+".join(sorted(k for k in kinds if k.startswith("float"))) or "no_float"
        counts[key] = counts.get(key, 0) + 1
    return counts


@dataclass(frozen=True)
class LoadedEngine:
    """A deserialized engine with its record; holds the runtime and logger the engine needs alive."""

    engine: trt.ICudaEngine
    entry: EngineEntry | None  # None: built at run time (the resample graph), not recorded
    runtime: trt.Runtime
    logger: trt.ILogger


def load_engine(folder: str | Path, manifest: Manifest, graph: str, device: Device) -> LoadedEngine:
    """Deserialize a recorded engine after checking it was built for ``device`` (BackendError or ManifestError
    with the rebuild command otherwise); keep the returned object, not only its ``engine``, while in use."""
    entry, path = check_engine(folder, manifest, graph, device)
    errors: list[str] = []
    logger = make_logger(errors)
    runtime = trt.Runtime(logger)
    if entry.plan.version_compatible:
        runtime.engine_host_code_allowed = True  # the plan embeds the lean runtime (host code)
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        raise ManifestError(f"{entry.target.library} could not load {path}: {'; '.join(errors[-5:]) or 'see the log'}; "
                            f"rebuild it with: {rebuild_command(folder)}")
    return LoadedEngine(engine, entry, runtime, logger)


def base_config(builder: trt.Builder, profile: Mapping[str, ShapeRange],
                compute_capabilities: tuple[CC, ...] = ()) -> trt.IBuilderConfig:
    """A builder config with the optimisation ``profile`` (min/opt/max per input with the object axis; none for
    all-static graphs) that, given ``compute_capabilities``, builds ahead of time for them (TensorRT-RTX)."""
    config = builder.create_builder_config()
    if compute_capabilities:  # ahead of time: TensorRT-RTX only
        config.num_compute_capabilities = len(compute_capabilities)
        for i, cc in enumerate(compute_capabilities):
            config.set_compute_capability(getattr(trt.ComputeCapability, RTX_TARGETS[cc]), i)
    if profile:
        shapes = builder.create_optimization_profile()
        for name, r in profile.items():
            shapes.set_shape(name, trt.Dims(list(r.min)), trt.Dims(list(r.opt)), trt.Dims(list(r.max)))
        config.add_optimization_profile(shapes)
    return config


def build_from_onnx(model: bytes, profile: Mapping[str, ShapeRange],
                    compute_capabilities: tuple[CC, ...] = ()) -> tuple[bytes, TensorIO]:
    """A small ONNX ``model`` (bytes) built into a strongly typed engine for the GPU here, or with TensorRT-RTX ahead
    of time for ``compute_capabilities``; returns the serialized engine and the parsed network's tensors.
    BackendError with the parser's or builder's errors."""
    errors: list[str] = []
    logger = make_logger(errors)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags())
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model):
        problems = [parser.get_error(i).desc() for i in range(parser.num_errors)]
        raise BackendError(f"the ONNX parser rejected a generated graph: {'; '.join(problems)}")
    config = base_config(builder, profile, compute_capabilities)
    data = builder.build_serialized_network(network, config)
    if data is None:
        raise BackendError(f"TensorRT could not build a generated graph: {'; '.join(errors[-5:]) or 'see the log'}")
    return bytes(memoryview(cast(bytes, data))), network_io(network)
