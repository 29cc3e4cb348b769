"""TensorRT 10 engines for an export folder: one engine per graph, FP16 with float32 islands.

Each step is a small function (Polygraphy's loaders are the model):

    network_from_onnx   ONNX file -> INetworkDefinition (OnnxParser; errors reported per node)
    check_network_io    the network's inputs match the manifest (names, shapes, object axis)
    pin_float32_layers  LayerNorm (INormalizationLayer) computes and reads in float32
    builder_config      flags, workspace limit, optimisation level, hardware compatibility
    add_profile         one optimisation profile, shapes per input name (object axis only)
    use_timing_cache    ``timing.cache`` of the export folder, reused and saved on every build
    serialize           the plan, written atomically as ``<graph>.<precision>.engine``

``build_engines`` runs them for the graphs of a folder, reuses every engine whose cache
key matches (``engine_cache``) and records each new engine in ``manifest.json`` as soon as
it is written. ``load_engine`` refuses an engine built for another GPU or TensorRT.
The plans themselves (profile, flags, float32 layer types) are decided in
``engine_cache.plan_build``, without TensorRT.

Mixed precision: precision constraints on a weakly typed network (mechanism (a))
-------------------------------------------------------------------------------
FP16 engines set ``BuilderFlag.FP16`` and ``BuilderFlag.OBEY_PRECISION_CONSTRAINTS``;
every INormalizationLayer (the ONNX LayerNormalization op; the export uses opset >= 17,
so every LayerNorm of the model is one) gets ``compute_precision = float32`` and
``precision = float32``, so its input is converted to float32 before the statistics. Its
output type is left to TensorRT: normalised values are O(1) and feed FP16 matrix
products. TensorRT 10's API documentation of INormalizationLayer says normalisation
already computes in float32 by default "even in mixed precision mode regardless of any
set builder flags to avoid overflow errors"; we set it explicitly rather than rely on a
default. Soft aggregation (clamp at 1e-7, log-odds) is its own graph, ``aggregate``,
built without the FP16 flag (and without TF32): a float32 engine, whatever
``--precision`` says (``engine_cache.FLOAT32_GRAPHS``).

Why not (b), a strongly typed network: there every tensor keeps the type the ONNX graph
gives it and "setting layer precision and layer output types is not allowed" (TensorRT
Python API, ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``). Our graphs are float32 from
end to end, so a strongly typed build is a float32 engine; FP16 would first need a float16
copy of every graph with explicit Casts around each LayerNorm (NVIDIA points to ModelOpt
AutoCast for that), a graph rewrite that belongs to the export and changes the graph
contract. Mechanism (a) keeps the ONNX graphs as they are and confines the choice to the
builder. The cost: TensorRT 10.12 deprecated the weak-typing API (``BuilderFlag.FP16``,
``OBEY_PRECISION_CONSTRAINTS``, ``ILayer.precision``: "TensorRT will be using strong-typing
exclusively in the future", TensorRT 10.12.0 release notes) and TensorRT 11 removes it
(10.x -> 11.x Python API migration guide). It works throughout TensorRT 10; on a
TensorRT without these flags ``builder_config`` raises instead of silently building
float32. Moving to (b) is an export-side change (a float16 graph variant) plus
``STRONGLY_TYPED`` here.

Compatibility flags and their speed cost (NVIDIA TensorRT 10 documentation)
---------------------------------------------------------------------------
- ``--hardware-compatible`` (``HardwareCompatibilityLevel.AMPERE_PLUS``): the engine runs
  on any Ampere or newer GPU; it "will limit the combined usage of driver reserved and
  backend kernel max shared memory to 48KiB, may reduce the number of available tactics
  for each layer, and may prevent some fusions from occurring. Thus this can decrease the
  performance", and it disables cuDNN, cuBLAS and cuBLASLt tactics. Only buildable on an
  Ampere or newer GPU.
- ``--version-compatible`` (``BuilderFlag.VERSION_COMPATIBLE``): the plan embeds the lean
  runtime and runs on the same or a later TensorRT; "version-compatible engines can be
  slower than engines built for a specific runtime version". Loading one needs
  ``Runtime.engine_host_code_allowed = True`` (``load_engine`` sets it): load only
  engines you trust.
Measure both with the benchmarks before using them in production.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from ..manifest import OBJECTS_AXIS, GraphEntry, read_manifest, sha256_file
from .engine_cache import (
    AMPERE,
    BuildPlan,
    BuildSettings,
    EngineEntry,
    EngineError,
    RuntimeInfo,
    cache_key,
    check_engine,
    is_reusable,
    objects_range,
    plan_build,
    rebuild_command,
    record_engines,
)
from .trt_env import runtime_info, trt

log = logging.getLogger(__name__)

TIMING_CACHE = "timing.cache"


class EngineBuildError(EngineError):
    """TensorRT could not parse or build a graph, or the graph does not match the manifest."""


@dataclass(frozen=True)
class BuildEvent:
    """Progress of one engine: ``start`` (about to build), ``built`` or ``cached`` (reused)."""

    graph: str
    status: str
    seconds: float = 0.0
    bytes: int = 0
    entry: EngineEntry | None = None


Progress = Callable[[BuildEvent], None]


def make_logger(errors: list[str]) -> trt.ILogger:
    """A TensorRT logger that forwards to ``logging`` and appends errors to ``errors``."""

    class _Logger(trt.ILogger):  # type: ignore[misc,unused-ignore]  # Any without the stubs
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
            if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR):
                errors.append(msg)
                log.error("TensorRT: %s", msg)
            elif severity == trt.ILogger.WARNING:
                log.warning("TensorRT: %s", msg)
            else:
                log.debug("TensorRT: %s", msg)

    return _Logger()


def parse_errors(parser: trt.OnnxParser) -> list[str]:
    """One line per parser error, naming the ONNX node (index, name, operator) when there is one."""
    lines = []
    for i in range(parser.num_errors):
        err = cast(trt.ParserError, parser.get_error(i))  # the 10.13 stubs type it as `...`
        node = err.node()
        where = f"node {node} {err.node_name()!r} ({err.node_operator()})" if node >= 0 else "graph"
        lines.append(f"  {where}: {err.desc()} [{err.code()}]")
    return lines


def network_from_onnx(builder: trt.Builder, path: Path,
                      logger: trt.ILogger) -> tuple[trt.INetworkDefinition, trt.OnnxParser]:
    """Parse ``path`` (external weights beside it are found); keep the parser alive until the build ends."""
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse_from_file(str(path))
    if not ok or parser.num_errors:
        raise EngineBuildError(f"TensorRT's ONNX parser rejected {path}:\n" + "\n".join(parse_errors(parser)))
    return network, parser


def check_network_io(network: trt.INetworkDefinition, graph: GraphEntry) -> None:
    """The parsed inputs have the manifest's names and shapes (-1 exactly on the object axis)."""
    want = {t.name: tuple(-1 if d == OBJECTS_AXIS else int(d) for d in t.shape) for t in graph.inputs}
    got = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        got[tensor.name] = tuple(tensor.shape[j] for j in range(len(tensor.shape)))
    if got != want:
        raise EngineBuildError(f"{graph.file}: the network's inputs {got} are not the manifest's {want} "
                               "(-1: object axis); the folder is inconsistent, export it again")


def pin_float32_layers(network: trt.INetworkDefinition, layer_types: Sequence[str]) -> list[str]:
    """Constrain every layer of ``layer_types`` (LayerType names) to float32; returns their names."""
    wanted = {getattr(trt.LayerType, name) for name in layer_types}
    pinned = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type not in wanted:
            continue
        if layer.type == trt.LayerType.NORMALIZATION:
            layer.__class__ = trt.INormalizationLayer  # the bindings return ILayer (Polygraphy does this too)
            cast(trt.INormalizationLayer, layer).compute_precision = trt.float32
        layer.precision = trt.float32
        pinned.append(layer.name)
    return pinned


def _flag(name: str) -> trt.BuilderFlag:
    flag = getattr(trt.BuilderFlag, name, None)
    if flag is None:
        raise EngineBuildError(
            f"TensorRT {trt.__version__} has no BuilderFlag.{name}: FP16 engines with float32 LayerNorm "
            "use TensorRT 10's precision constraints (removed in TensorRT 11); use TensorRT 10, or "
            "--precision fp32")
    return cast(trt.BuilderFlag, flag)


def builder_config(builder: trt.Builder, plan: BuildPlan) -> trt.IBuilderConfig:
    """Flags, workspace limit, optimisation level and hardware compatibility of ``plan``."""
    config = builder.create_builder_config()
    for name in plan.builder_flags:
        config.set_flag(_flag(name))
    for name in plan.cleared_flags:
        config.clear_flag(_flag(name))
    if plan.workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_mib << 20)
    config.builder_optimization_level = plan.opt_level
    if plan.hardware_compatibility == "ampere_plus":
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    return config


def add_profile(builder: trt.Builder, config: trt.IBuilderConfig, plan: BuildPlan) -> None:
    """One optimisation profile with min/opt/max per input name; none for all-static graphs."""
    if not plan.profile:
        return
    profile = builder.create_optimization_profile()
    for name, r in plan.profile.items():
        profile.set_shape(name, trt.Dims(list(r.min)), trt.Dims(list(r.opt)), trt.Dims(list(r.max)))
    config.add_optimization_profile(profile)


def use_timing_cache(config: trt.IBuilderConfig, path: Path,
                     cache: trt.ITimingCache | None) -> trt.ITimingCache:
    """Attach ``cache``, or the one saved at ``path``, or a new one; returns the attached cache.

    A saved cache from another GPU or TensorRT version (or unreadable) is replaced by a new
    one, which overwrites it after the build.
    """
    if cache is None and path.is_file():
        try:
            cache = config.create_timing_cache(path.read_bytes())
            if config.set_timing_cache(cache, False):
                return cache
        except (RuntimeError, TypeError, ValueError) as exc:  # a corrupted file
            log.debug("cannot read %s: %s", path, exc)
        log.warning("%s is from another GPU or TensorRT version, or unreadable; starting a new timing cache",
                    path)
        cache = None
    if cache is None:
        cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, False)
    return cache


def write_atomic(path: Path, data: bytes | memoryview) -> None:
    """Write to a temporary file beside ``path``, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def serialize(builder: trt.Builder, network: trt.INetworkDefinition, config: trt.IBuilderConfig,
              errors: list[str], name: str) -> memoryview:
    """The serialized plan; raises with TensorRT's last errors if the build fails."""
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        detail = "; ".join(errors[-5:]) or "see the log"
        raise EngineBuildError(f"TensorRT could not build {name}: {detail}")
    return memoryview(plan)


@dataclass
class BuildSession:
    """One TensorRT builder, logger and timing cache shared by the engines of one folder."""

    folder: Path
    runtime: RuntimeInfo
    errors: list[str] = field(default_factory=list)
    timing_cache: trt.ITimingCache | None = None

    def __post_init__(self) -> None:
        self.logger = make_logger(self.errors)
        self.builder = trt.Builder(self.logger)

    def build(self, plan: BuildPlan, graph: GraphEntry, key: str) -> EngineEntry:
        """Build, write and describe the engine of ``plan``."""
        t0 = time.perf_counter()
        self.errors.clear()
        network, parser = network_from_onnx(self.builder, self.folder / plan.onnx_file, self.logger)
        check_network_io(network, graph)
        pinned = pin_float32_layers(network, plan.float32_layer_types)
        config = builder_config(self.builder, plan)
        add_profile(self.builder, config, plan)
        self.timing_cache = use_timing_cache(config, self.folder / TIMING_CACHE, self.timing_cache)
        data = serialize(self.builder, network, config, self.errors, plan.graph)
        del parser  # owns the weights: only now may it go
        write_atomic(self.folder / TIMING_CACHE, memoryview(self.timing_cache.serialize()))
        path = self.folder / plan.engine_file
        write_atomic(path, data)
        log.info("built %s: %d layers pinned to float32, %.1f s", path, len(pinned), time.perf_counter() - t0)
        return EngineEntry(plan, self.runtime, sha256_file(path), path.stat().st_size, key,
                           float32_layers=len(pinned), build_seconds=time.perf_counter() - t0,
                           created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))


def _previous(folder: Path, manifest_entry: GraphEntry, precision: str) -> EngineEntry | None:
    raw = manifest_entry.engines.get(precision)
    if raw is None:
        return None
    try:
        return EngineEntry.from_dict(raw)
    except EngineError as exc:
        log.warning("%s: ignoring the recorded %s engine (%s); rebuilding", folder, precision, exc)
        return None


def build_engines(folder: str | Path, settings: BuildSettings, *, graphs: Sequence[str] | None = None,
                  force: bool = False, progress: Progress | None = None, device: int = 0) -> list[BuildEvent]:
    """Build (or reuse) the engines of an export folder and record them in its manifest.

    Args:
        folder: an export folder written by ``simvos-export``.
        settings: precision, workspace, optimisation level, compatibility flags.
        graphs: a subset of the manifest's graphs (default: all of them).
        force: rebuild even engines whose cache key matches.
        progress: called with a ``BuildEvent`` before and after each engine.
        device: the CUDA device to build on.

    Raises:
        MissingDependencyError / GPUUnavailableError: no TensorRT, or no usable GPU.
        ManifestError: the folder is not a complete, intact export.
        EngineBuildError: a graph cannot be parsed or built (earlier engines stay recorded).
    """
    folder = Path(folder)
    runtime = runtime_info(device)
    manifest = read_manifest(folder, verify=True)
    names = list(manifest.graphs) if graphs is None else list(graphs)
    unknown = sorted(set(names) - set(manifest.graphs))
    if unknown:
        raise EngineBuildError(f"--graphs {unknown}: not in {folder}; it has {list(manifest.graphs)}")
    if settings.hardware_compatible and runtime.compute_capability < AMPERE:
        raise EngineBuildError(f"--hardware-compatible engines are built on an Ampere or newer GPU; this is "
                               f"{runtime.describe()}; build without it, or on a newer GPU")
    session: BuildSession | None = None
    events = []
    for name in names:
        plan = plan_build(name, manifest.graphs[name], objects_range(manifest), settings)
        key = cache_key(plan, runtime)
        previous = _previous(folder, manifest.graphs[name], settings.precision)
        if not force and previous is not None and is_reusable(folder, previous, key):
            events.append(BuildEvent(name, "cached", 0.0, previous.bytes, previous))
        else:
            if progress:
                progress(BuildEvent(name, "start"))
            session = session or BuildSession(folder, runtime)
            entry = session.build(plan, manifest.graphs[name], key)
            record_engines(folder, [entry])
            events.append(BuildEvent(name, "built", entry.build_seconds, entry.bytes, entry))
        if progress:
            progress(events[-1])
    return events


@dataclass(frozen=True)
class LoadedEngine:
    """A deserialized engine with its manifest entry; holds the runtime and logger the engine needs alive."""

    engine: trt.ICudaEngine
    entry: EngineEntry
    runtime: trt.Runtime
    logger: trt.ILogger


def load_engine(folder: str | Path, graph: str, precision: str = "fp16", *, device: int = 0) -> LoadedEngine:
    """Deserialize a recorded engine after checking it was built for this GPU and TensorRT.

    Raises ``EngineCompatibilityError`` (another GPU, compute capability, platform or
    TensorRT version) or ``EngineError`` (missing, stale, corrupted), each with the
    ``simvos-build ... --force`` command that fixes it. Keep the returned object (not only
    its ``engine``) while the engine is in use: TensorRT needs the runtime to outlive it.
    """
    entry, path = check_engine(folder, graph, precision, runtime_info(device))
    errors: list[str] = []
    logger = make_logger(errors)
    runtime = trt.Runtime(logger)
    if entry.plan.version_compatible:
        runtime.engine_host_code_allowed = True  # the plan embeds the lean runtime (host code)
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        raise EngineError(f"TensorRT could not load {path}: {'; '.join(errors[-5:]) or 'see the log'}; "
                          f"rebuild it with: {rebuild_command(folder, precision)}")
    return LoadedEngine(engine, entry, runtime, logger)
