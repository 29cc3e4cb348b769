"""Engines for an export folder: one strongly typed engine per graph, with TensorRT or TensorRT-RTX; the
decisions (plans, keys, compatibility) are in ``trt.plan`` and ``trt.records`` (export/README.md)."""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import cast

from ..errors import ExportError
from ..io import TIMING_CACHE, write_atomic
from ..manifest import GraphEntry, ManifestError, read_manifest, sha256_file
from ..trt.engine import QUIET, base_config, build_target, layer_precisions, make_logger, manifest_io, network_io
from ..trt.library import network_flags, select_library, trt
from ..trt.plan import BuildPlan, BuildSettings, Target, cache_key, objects_range, plan_build
from ..trt.records import EngineEntry, find_entry, is_reusable, record_engines

log = logging.getLogger(__name__)


class BuildStatus(StrEnum):
    START = "start"  # about to build
    BUILT = "built"
    CACHED = "cached"  # reused: its cache key matched


@dataclass(frozen=True)
class BuildEvent:
    """Progress of one engine."""

    graph: str
    status: BuildStatus
    seconds: float = 0.0
    bytes: int = 0
    entry: EngineEntry | None = None


Progress = Callable[[BuildEvent], None]


def parse_errors(parser: trt.OnnxParser) -> list[str]:
    """One line per parser error, naming the ONNX node (index, name, operator) when there is one."""
    lines = []
    for i in range(parser.num_errors):
        err: trt.ParserError = parser.get_error(i)  # type: ignore[no-untyped-call]  # untyped in the bindings
        node = err.node()
        where = f"node {node} {err.node_name()!r} ({err.node_operator()})" if node >= 0 else "graph"
        desc = " ".join(line.strip() for line in err.desc().splitlines() if not any(q in line for q in QUIET))
        lines.append(f"  {where}: {desc} [{err.code()}]")
    return lines


def network_from_onnx(builder: trt.Builder, path: Path,
                      logger: trt.ILogger) -> tuple[trt.INetworkDefinition, trt.OnnxParser]:
    """Parse ``path`` into a strongly typed network; keep the parser alive until the build ends."""
    network = builder.create_network(network_flags())
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)) or parser.num_errors:
        raise ExportError(f"{selected_name()}'s ONNX parser rejected {path}:\n" + "\n".join(parse_errors(parser)))
    return network, parser


def selected_name() -> str:
    return "TensorRT-RTX" if trt.__name__.startswith("tensorrt_rtx") else "TensorRT"


def check_network_io(network: trt.INetworkDefinition, graph: GraphEntry) -> None:
    """The parsed inputs and outputs have the manifest's names, dtypes and shapes (-1 on the object axis)."""
    want, got = manifest_io(graph), network_io(network)
    if got != want:
        raise ExportError(f"{graph.file}: the network's tensors {got} are not the manifest's {want} "
                          "((is input, dtype, shape), -1: object axis); export the folder again")


def builder_config(builder: trt.Builder, plan: BuildPlan, target: Target) -> trt.IBuilderConfig:
    """Workspace, optimisation level, TF32, compatibility, (TensorRT-RTX) target GPUs and profile of ``plan``."""
    config = base_config(builder, plan.profile, target.compute_capabilities if target.ahead_of_time else ())
    if plan.workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_mib << 20)
    config.builder_optimization_level = plan.opt_level
    if not plan.tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    if plan.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if plan.ampere_plus:
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    return config


def use_timing_cache(config: trt.IBuilderConfig, path: Path, cache: trt.ITimingCache | None) -> trt.ITimingCache:
    """Attach ``cache``, or the one saved at ``path`` if it fits this GPU and library, or a new one."""
    if cache is None and path.is_file():
        try:
            cache = config.create_timing_cache(path.read_bytes())
            if config.set_timing_cache(cache, False):
                return cache
        except (RuntimeError, TypeError, ValueError) as exc:  # a corrupted file
            log.debug("cannot read %s: %s", path, exc)
        log.warning("%s is from another GPU or TensorRT version, or unreadable; starting a new timing cache", path)
        cache = None
    if cache is None:
        cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, False)
    return cache


@dataclass
class BuildSession:
    """One builder, logger and timing cache shared by the engines of one folder."""

    folder: Path
    target: Target
    errors: list[str] = field(default_factory=list)
    timing_cache: trt.ITimingCache | None = None

    def __post_init__(self) -> None:
        self.logger = make_logger(self.errors)
        self.builder = trt.Builder(self.logger)

    def build(self, plan: BuildPlan, graph: GraphEntry, key: str) -> EngineEntry:
        t0 = time.perf_counter()
        self.errors.clear()
        network, parser = network_from_onnx(self.builder, self.folder / plan.onnx_file, self.logger)
        check_network_io(network, graph)
        config = builder_config(self.builder, plan, self.target)
        if not self.target.ahead_of_time:  # TensorRT-RTX times no tactics ahead of time: no cache to keep
            self.timing_cache = use_timing_cache(config, self.folder / TIMING_CACHE, self.timing_cache)
        data = self.builder.build_serialized_network(network, config)
        if data is None:
            raise ExportError(f"{selected_name()} could not build {plan.graph}: "
                              f"{'; '.join(self.errors[-5:]) or 'see the log'}")
        layers = layer_precisions(network)
        del parser  # owns the weights: only now may it go
        if self.timing_cache is not None:
            write_atomic(self.folder / TIMING_CACHE, bytes(memoryview(cast(bytes, self.timing_cache.serialize()))))
        path = self.folder / plan.engine_file
        write_atomic(path, bytes(memoryview(cast(bytes, data))))
        seconds = time.perf_counter() - t0
        log.info("built %s (%s): %s, %.1f s", path, plan.precision, layers, seconds)
        return EngineEntry(plan, self.target, sha256_file(path), path.stat().st_size, key, layers, seconds,
                           _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))


def build_engines(folder: str | Path, settings: BuildSettings, *, library: str = "auto",
                  graphs: Sequence[str] | None = None, force: bool = False, progress: Progress | None = None,
                  device: int = 0) -> list[BuildEvent]:
    """Build (or reuse, unless ``force``) the engines of ``graphs`` (default all) and record each in the manifest;
    ``progress`` gets a ``BuildEvent`` before and after each. Raises MissingDependencyError or BackendError (no
    library, or no GPU for TensorRT), ManifestError, or ExportError (earlier engines stay recorded)."""
    folder = Path(folder)
    manifest = read_manifest(folder, verify=True)
    names = list(manifest.graphs) if graphs is None else list(graphs)
    unknown = sorted(set(names) - set(manifest.graphs))
    if unknown:
        raise ExportError(f"--graphs {unknown}: not in {folder}; it has {list(manifest.graphs)}")
    target = build_target(select_library(library), settings, device)
    session: BuildSession | None = None
    events = []
    for name in names:
        plan = plan_build(name, manifest.graphs[name], objects_range(manifest), settings)
        key = cache_key(plan, target)
        try:
            previous = find_entry(manifest, name)
        except ManifestError as exc:
            log.warning("ignoring the recorded %s engine (%s); rebuilding", name, exc)
            previous = None
        if not force and is_reusable(folder, previous, key):
            assert previous is not None
            events.append(BuildEvent(name, BuildStatus.CACHED, 0.0, previous.bytes, previous))
        else:
            if progress:
                progress(BuildEvent(name, BuildStatus.START))
            session = session or BuildSession(folder, target)
            entry = session.build(plan, manifest.graphs[name], key)
            record_engines(folder, [entry])
            events.append(BuildEvent(name, BuildStatus.BUILT, entry.build_seconds, entry.bytes, entry))
        if progress:
            progress(events[-1])
    return events
