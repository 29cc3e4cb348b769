"""Engine identity: what an engine was built from and for, and whether it can be reused or loaded.

Pure Python (no TensorRT, no CUDA), so the decisions are unit-tested on any machine.

- ``BuildSettings``: the user's choices (precision, workspace, optimisation level,
  hardware and version compatibility).
- ``plan_build`` turns a manifest graph and the settings into a ``BuildPlan``: the
  optimisation profile per input name, the TensorRT builder flags, and the layer types
  kept in float32. ``trt_build`` only applies a plan.
- ``EngineEntry``: the record of one built engine, stored in ``manifest.json`` under
  ``graphs[name]["engines"][precision]`` by ``record_engines``.
- ``cache_key``: a stable hash of everything that went into a build (plan + the
  ``RuntimeInfo`` of the build machine). ``simvos-build`` reuses an engine whose entry
  has the key it would build with, and rebuilds otherwise. The engine's own sha256 is
  not part of the key (it is only known after the build); it guards the file instead.
- ``compatibility`` says why an engine cannot run on a given ``RuntimeInfo`` (None if
  it can); ``check_engine`` raises ``EngineCompatibilityError`` with the rebuild command.

TensorRT's portability rules, from NVIDIA's TensorRT 10 documentation ("Version
Compatibility", "Hardware Compatibility", Support Matrix): by default a plan runs only
with the exact TensorRT version and on the GPU model it was built for, and never across
platforms; a version-compatible plan runs on the same or a later TensorRT; an
``AMPERE_PLUS`` hardware-compatible plan runs on any Ampere or newer GPU (compute
capability >= 8.0), never on Turing or older.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import SimVOSError
from ..manifest import (
    MANIFEST,
    OBJECTS_AXIS,
    GraphEntry,
    Manifest,
    ManifestError,
    read_manifest,
    sha256_file,
    write_json_atomic,
)

#: Bump when the way engines are built changes in a way the other key fields miss.
KEY_VERSION = 1
PRECISIONS = ("fp16", "fp32")
HARDWARE_LEVELS = ("none", "ampere_plus")
#: Graphs built as float32 engines whatever the precision: soft aggregation (clamp at
#: 1e-7, log-odds) is meaningless in float16; it is its own, tiny graph for that reason.
FLOAT32_GRAPHS = frozenset({"aggregate"})
#: TensorRT layer types pinned to float32 in an FP16 engine: INormalizationLayer
#: (ONNX LayerNormalization) holds the LayerNorm statistics.
FLOAT32_LAYER_TYPES = ("NORMALIZATION",)
AMPERE = (8, 0)


class EngineError(SimVOSError):
    """An engine is missing, corrupted, stale, or cannot be built."""


class EngineCompatibilityError(EngineError):
    """An engine was built for another GPU, compute capability, platform or TensorRT version."""


@dataclass(frozen=True)
class RuntimeInfo:
    """The TensorRT and GPU an engine is built or run with (see ``trt_env.runtime_info``)."""

    trt_version: str  # tensorrt.__version__, e.g. "10.13.0.35"
    gpu_name: str  # e.g. "NVIDIA A100-SXM4-80GB"
    compute_capability: tuple[int, int]  # (major, minor)
    platform: str  # e.g. "Linux-x86_64"

    def describe(self) -> str:
        cc = ".".join(map(str, self.compute_capability))
        return f"TensorRT {self.trt_version} on {self.gpu_name} (compute capability {cc}, {self.platform})"


@dataclass(frozen=True)
class BuildSettings:
    """What ``simvos-build`` was asked for; validated here, applied by ``trt_build``."""

    precision: str = "fp16"
    workspace_mib: int | None = None  # None: TensorRT's default (the whole device memory)
    opt_level: int = 3  # TensorRT builder optimisation level 0..5 (3 is TensorRT's default)
    hardware_compatible: bool = False  # AMPERE_PLUS: runs on any Ampere or newer GPU, slower
    version_compatible: bool = False  # runs on later TensorRT versions, slower, bigger plan

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision: {self.precision!r} is not one of {PRECISIONS}")
        if self.workspace_mib is not None and self.workspace_mib < 1:
            raise ValueError(f"workspace_mib: {self.workspace_mib} MiB is not a positive number")
        if not 0 <= self.opt_level <= 5:
            raise ValueError(f"opt_level: {self.opt_level} is outside TensorRT's range 0..5")

    @property
    def hardware_compatibility(self) -> str:
        return "ampere_plus" if self.hardware_compatible else "none"


@dataclass(frozen=True)
class ShapeRange:
    """Minimum, optimum and maximum shape of one input in the optimisation profile."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ShapeRange:
        return cls(tuple(d["min"]), tuple(d["opt"]), tuple(d["max"]))


def objects_range(manifest: Manifest) -> tuple[int, int, int]:
    """The object-batch profile of an export: min 1, opt min(2, max), max from the manifest."""
    return 1, min(2, manifest.max_objects), manifest.max_objects


def plan_profile(graph: GraphEntry, objects: tuple[int, int, int]) -> dict[str, ShapeRange]:
    """Shape ranges of the inputs that have the object axis; static inputs need none."""
    lo, opt, hi = objects
    if not 1 <= lo <= opt <= hi:
        raise ValueError(f"objects profile {objects} is not 1 <= min <= opt <= max")
    return {t.name: ShapeRange(t.concrete(lo), t.concrete(opt), t.concrete(hi))
            for t in graph.inputs if OBJECTS_AXIS in t.shape}


@dataclass(frozen=True)
class BuildPlan:
    """Everything ``trt_build`` needs to build one graph, decided without TensorRT."""

    graph: str
    onnx_file: str
    onnx_sha256: str
    precision: str  # the engine set this engine belongs to (manifest key)
    profile: dict[str, ShapeRange]
    builder_flags: tuple[str, ...]  # BuilderFlag names to set
    cleared_flags: tuple[str, ...]  # BuilderFlag names to clear (TF32 for float32 engines)
    float32_layer_types: tuple[str, ...]  # LayerType names pinned to float32
    hardware_compatibility: str
    version_compatible: bool
    workspace_mib: int | None
    opt_level: int

    @property
    def engine_file(self) -> str:
        return f"{self.graph}.{self.precision}.engine"

    @property
    def compute(self) -> str:
        """What the engine computes in, for people."""
        return "fp16, LayerNorm in fp32" if "FP16" in self.builder_flags else "fp32"


def plan_build(name: str, graph: GraphEntry, objects: tuple[int, int, int],
               settings: BuildSettings) -> BuildPlan:
    """The build plan of one manifest graph (the mixed-precision recipe is in ``trt_build``'s docstring)."""
    half = settings.precision == "fp16" and name not in FLOAT32_GRAPHS
    flags: tuple[str, ...] = ("FP16", "OBEY_PRECISION_CONSTRAINTS") if half else ()
    if settings.version_compatible:
        flags += ("VERSION_COMPATIBLE",)
    return BuildPlan(graph=name, onnx_file=graph.file, onnx_sha256=graph.sha256, precision=settings.precision,
                     profile=plan_profile(graph, objects), builder_flags=flags,
                     cleared_flags=() if half else ("TF32",),
                     float32_layer_types=FLOAT32_LAYER_TYPES if half else (),
                     hardware_compatibility=settings.hardware_compatibility,
                     version_compatible=settings.version_compatible,
                     workspace_mib=settings.workspace_mib, opt_level=settings.opt_level)


def _identity(plan: BuildPlan, runtime: RuntimeInfo) -> dict[str, Any]:
    return {"key_version": KEY_VERSION, "graph": plan.graph, "onnx_sha256": plan.onnx_sha256,
            "precision": plan.precision, "profile": {k: v.to_dict() for k, v in sorted(plan.profile.items())},
            "builder_flags": sorted(plan.builder_flags), "cleared_flags": sorted(plan.cleared_flags),
            "float32_layer_types": sorted(plan.float32_layer_types),
            "hardware_compatibility": plan.hardware_compatibility,
            "version_compatible": plan.version_compatible, "workspace_mib": plan.workspace_mib,
            "opt_level": plan.opt_level, "trt_version": runtime.trt_version, "gpu_name": runtime.gpu_name,
            "compute_capability": list(runtime.compute_capability), "platform": runtime.platform}


def cache_key(plan: BuildPlan, runtime: RuntimeInfo) -> str:
    """sha256 of the canonical JSON of the build's identity: equal keys, interchangeable engines."""
    text = json.dumps(_identity(plan, runtime), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class EngineEntry:
    """One built engine, as recorded in the manifest."""

    plan: BuildPlan
    built_with: RuntimeInfo
    sha256: str
    bytes: int
    cache_key: str  # ``cache_key(plan, built_with)`` as computed by the build
    float32_layers: int = 0  # layers actually pinned to float32
    build_seconds: float = 0.0
    created: str = ""

    @property
    def file(self) -> str:
        return self.plan.engine_file

    def to_dict(self) -> dict[str, Any]:
        plan = {**asdict(self.plan), "profile": {k: v.to_dict() for k, v in self.plan.profile.items()}}
        return {"file": self.file, "sha256": self.sha256, "bytes": self.bytes, "compute": self.plan.compute,
                "cache_key": self.cache_key,
                "built_with": asdict(self.built_with), "plan": plan, "float32_layers": self.float32_layers,
                "build_seconds": self.build_seconds, "created": self.created}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineEntry:
        try:
            p = dict(d["plan"])
            p["profile"] = {k: ShapeRange.from_dict(v) for k, v in p["profile"].items()}
            for key in ("builder_flags", "cleared_flags", "float32_layer_types"):
                p[key] = tuple(p[key])
            rt = dict(d["built_with"])
            rt["compute_capability"] = tuple(rt["compute_capability"])
            return cls(BuildPlan(**p), RuntimeInfo(**rt), d["sha256"], d["bytes"], d["cache_key"],
                       d.get("float32_layers", 0), d.get("build_seconds", 0.0), d.get("created", ""))
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineError(f"invalid engine entry in {MANIFEST} ({type(exc).__name__}: {exc}); "
                              "rebuild the engines with simvos-build --force") from exc


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def _cc(cc: tuple[int, int]) -> str:
    return f"{cc[0]}.{cc[1]}"


def compatibility(entry: EngineEntry, runtime: RuntimeInfo) -> str | None:
    """Why the engine of ``entry`` cannot run with ``runtime``, or None if it can."""
    built, plan = entry.built_with, entry.plan
    reasons = []
    if built.platform != runtime.platform:
        reasons.append(f"it was built on {built.platform} and this is {runtime.platform} "
                       "(engines never move between platforms)")
    if plan.version_compatible:
        if _version(runtime.trt_version) < _version(built.trt_version):
            reasons.append(f"it was built version-compatible with TensorRT {built.trt_version}, which runs "
                           f"on that or a later TensorRT only, and this is TensorRT {runtime.trt_version}")
    elif runtime.trt_version != built.trt_version:
        reasons.append(f"it was built with TensorRT {built.trt_version} and this is TensorRT "
                       f"{runtime.trt_version} (it was not built version-compatible)")
    if plan.hardware_compatibility == "ampere_plus":
        if runtime.compute_capability < AMPERE:
            reasons.append(f"it was built hardware-compatible for Ampere and newer GPUs (compute capability "
                           f">= 8.0) and this GPU is {runtime.gpu_name} "
                           f"(compute capability {_cc(runtime.compute_capability)})")
    elif built.compute_capability != runtime.compute_capability:
        reasons.append(f"it was built for compute capability {_cc(built.compute_capability)} "
                       f"({built.gpu_name}) and this GPU is {runtime.gpu_name} (compute capability "
                       f"{_cc(runtime.compute_capability)})")
    elif built.gpu_name != runtime.gpu_name:
        reasons.append(f"it was built for {built.gpu_name} and this GPU is {runtime.gpu_name} (engines are "
                       "tuned to one GPU model unless built hardware-compatible)")
    return "; ".join(reasons) or None


def rebuild_command(folder: str | Path, precision: str = "fp16", *, force: bool = True) -> str:
    """The ``simvos-build`` command line that (re)builds the engines of ``folder``."""
    extra = ("" if precision == "fp16" else f" --precision {precision}") + (" --force" if force else "")
    return f"simvos-build {shlex.quote(str(folder))}{extra}"


def find_entry(manifest: Manifest, graph: str, precision: str) -> EngineEntry | None:
    if graph not in manifest.graphs:
        raise ManifestError(f"the export has no graph {graph!r}; it has {sorted(manifest.graphs)}")
    raw = manifest.graphs[graph].engines.get(precision)
    return None if raw is None else EngineEntry.from_dict(raw)


def check_engine(folder: str | Path, graph: str, precision: str,
                 runtime: RuntimeInfo) -> tuple[EngineEntry, Path]:
    """The entry and path of an engine that can run with ``runtime``; raises with the fix otherwise."""
    folder = Path(folder)
    manifest = read_manifest(folder, verify=False)
    entry = find_entry(manifest, graph, precision)
    fix = rebuild_command(folder, precision)
    if entry is None:
        raise EngineError(f"{folder} has no {precision} engine for {graph}; build it with: "
                          f"{rebuild_command(folder, precision, force=False)}")
    path = folder / entry.file
    if entry.plan.onnx_sha256 != manifest.graphs[graph].sha256:
        raise EngineError(f"{path} was built from another {graph}.onnx than the folder holds now (stale); "
                          f"rebuild it with: {fix}")
    reason = compatibility(entry, runtime)
    if reason is not None:
        raise EngineCompatibilityError(f"cannot load {path}: {reason}; rebuild it here with: {fix}")
    if not path.is_file():
        raise EngineError(f"{path} is missing; rebuild it with: {fix}")
    if sha256_file(path) != entry.sha256:
        raise EngineError(f"{path} does not match the sha256 in {MANIFEST} (modified or corrupted); "
                          f"rebuild it with: {fix}")
    return entry, path


def is_reusable(folder: Path, entry: EngineEntry | None, key: str) -> bool:
    """True if ``entry`` was built with ``key`` and its file is intact."""
    if entry is None or entry.cache_key != key:
        return False
    path = folder / entry.file
    return path.is_file() and sha256_file(path) == entry.sha256


def record_engines(folder: str | Path, entries: list[EngineEntry]) -> None:
    """Store engine entries in ``manifest.json`` (``graphs[name]["engines"][precision]``), atomically.

    Reads the manifest as JSON and leaves every other field as it is, so ``read_manifest``
    (which verifies the ONNX sha256s) still accepts the folder.
    """
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text())
        graphs = data["graphs"]
    except (OSError, ValueError, KeyError) as exc:
        raise ManifestError(f"cannot update {path} ({type(exc).__name__}: {exc}); export again") from exc
    for entry in entries:
        if entry.plan.graph not in graphs:
            raise ManifestError(f"{path} has no graph {entry.plan.graph!r}; it has {sorted(graphs)}")
        graphs[entry.plan.graph].setdefault("engines", {})[entry.plan.precision] = entry.to_dict()
    write_json_atomic(path, data)
