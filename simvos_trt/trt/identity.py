"""Engine identity: what an engine was built from and for, whether it can be reused or run here.

Pure Python (no TensorRT, no CUDA), so every decision is unit-tested on any machine. A
``BuildPlan`` is what to build (graph, precision, profile, options), a ``Target`` the
library and GPUs it is built for, ``cache_key`` hashes both, and ``compatibility`` says
why a recorded engine cannot run on a ``Device``. Portability rules: docs/tensorrt.md.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BackendError
from ..io import MANIFEST, write_json_atomic
from ..manifest import OBJECTS_AXIS, GraphEntry, Manifest, ManifestError, read_manifest, sha256_file

#: Bump when the way engines are built changes in a way the other key fields miss.
KEY_VERSION = 2
AMPERE = (8, 0)
#: TensorRT-RTX's ahead-of-time targets (``trt.ComputeCapability``); Hopper is not among them.
RTX_TARGETS = {(7, 5): "SM75", (8, 0): "SM80", (8, 6): "SM86", (8, 9): "SM89", (12, 0): "SM120",
               (12, 1): "SM121"}
DEFAULT_RTX_TARGETS = ((8, 0),)  # the A100 of the paper's measurements

CC = tuple[int, int]


class EngineError(ManifestError):
    """An engine is missing, corrupted, stale, or cannot be built."""


class EngineCompatibilityError(BackendError):
    """An engine was built for another GPU, platform or TensorRT library or version."""


def cc_text(cc: CC) -> str:
    return f"{cc[0]}.{cc[1]}"


def parse_cc(text: str) -> CC:
    """``"8.0"`` -> (8, 0); ValueError naming the format otherwise."""
    try:
        major, minor = (int(p) for p in text.split("."))
    except ValueError:
        raise ValueError(f"compute capability {text!r}: expected MAJOR.MINOR, e.g. 8.0 (A100) or 8.6") from None
    return major, minor


@dataclass(frozen=True)
class Device:
    """Where an engine is to run: the TensorRT library selected here and the GPU."""

    library: str
    version: str
    platform: str
    gpu_name: str
    compute_capability: CC

    def describe(self) -> str:
        return f"{self.library} {self.version} on {self.gpu_name} (compute capability " \
               f"{cc_text(self.compute_capability)}, {self.platform})"


@dataclass(frozen=True)
class Target:
    """The library an engine is built with and the GPUs it is built for.

    TensorRT builds on and for one GPU (``gpu_name``, its compute capability);
    TensorRT-RTX builds ahead of time for ``compute_capabilities`` (``gpu_name`` empty).
    """

    library: str
    version: str
    platform: str
    compute_capabilities: tuple[CC, ...]
    gpu_name: str = ""

    @property
    def ahead_of_time(self) -> bool:
        return self.library == "tensorrt_rtx"

    def describe(self) -> str:
        where = self.gpu_name or "compute capability " + ", ".join(cc_text(c) for c in self.compute_capabilities)
        return f"{self.library} {self.version} for {where} ({self.platform})"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "compute_capabilities": [list(c) for c in self.compute_capabilities]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Target:
        return cls(d["library"], d["version"], d["platform"], tuple(tuple(c) for c in d["compute_capabilities"]),
                   d.get("gpu_name", ""))


@dataclass(frozen=True)
class BuildSettings:
    """What ``simvos-build`` was asked for; validated here and against the library by ``check_options``."""

    compute_capabilities: tuple[CC, ...] = ()  # TensorRT-RTX targets; () = DEFAULT_RTX_TARGETS
    workspace_mib: int | None = None  # None: TensorRT's default (the whole device memory)
    opt_level: int = 3  # TensorRT builder optimisation level 0..5 (3 is TensorRT's default)
    hardware_compatible: bool = False  # TensorRT only: AMPERE_PLUS engines, run on any Ampere+ GPU, slower
    version_compatible: bool = False  # TensorRT only: run on later TensorRT versions, slower, bigger

    def __post_init__(self) -> None:
        if self.workspace_mib is not None and self.workspace_mib < 1:
            raise ValueError(f"workspace: {self.workspace_mib} MiB is not a positive number")
        if not 0 <= self.opt_level <= 5:
            raise ValueError(f"opt_level: {self.opt_level} is outside TensorRT's range 0..5")
        unknown = [cc_text(c) for c in self.compute_capabilities if c not in RTX_TARGETS]
        if unknown:
            raise ValueError(f"compute capability {', '.join(unknown)}: TensorRT-RTX builds for "
                             f"{', '.join(cc_text(c) for c in RTX_TARGETS)} (Hopper, 9.0, is not among them)")

    @property
    def hardware_compatibility(self) -> str:
        return "ampere_plus" if self.hardware_compatible else "none"


def check_options(settings: BuildSettings, library: str) -> None:
    """Refuse, in one line, the options the library cannot honour (measured with TensorRT-RTX 1.7)."""
    if library == "tensorrt_rtx":
        if settings.version_compatible:
            raise EngineError("--version-compatible: TensorRT-RTX cannot build version-compatible engines "
                              "(it lacks the lean runtime, libnvinfer_lean); drop the option or build with "
                              "TensorRT (--library tensorrt)")
        if settings.hardware_compatible:
            raise EngineError("--hardware-compatible: TensorRT-RTX does not support hardware compatibility "
                              "levels; list the GPUs with --compute-capability instead")
    elif settings.compute_capabilities:
        raise EngineError("--compute-capability: TensorRT builds for the GPU it runs on; ahead-of-time "
                          "targets need TensorRT-RTX (--library tensorrt_rtx, pip install 'simvos-trt[rtx]')")


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
    """Everything ``trt_build`` needs to build one graph, decided without TensorRT.

    The network is strongly typed: the graph's own types decide every layer's precision;
    ``tf32`` False keeps float32 graphs exact (no TF32 matrix products).
    """

    graph: str
    onnx_file: str
    onnx_sha256: str
    precision: str  # the graph's (``GraphEntry.precision``)
    profile: dict[str, ShapeRange]
    tf32: bool
    hardware_compatibility: str
    version_compatible: bool
    workspace_mib: int | None
    opt_level: int

    @property
    def engine_file(self) -> str:
        return f"{self.graph}.engine"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "profile": {k: v.to_dict() for k, v in sorted(self.profile.items())}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BuildPlan:
        return cls(**{**d, "profile": {k: ShapeRange.from_dict(v) for k, v in d["profile"].items()}})


def plan_build(name: str, graph: GraphEntry, objects: tuple[int, int, int], settings: BuildSettings) -> BuildPlan:
    """The build plan of one manifest graph."""
    return BuildPlan(graph=name, onnx_file=graph.file, onnx_sha256=graph.sha256, precision=graph.precision,
                     profile=plan_profile(graph, objects), tf32=False,
                     hardware_compatibility=settings.hardware_compatibility,
                     version_compatible=settings.version_compatible, workspace_mib=settings.workspace_mib,
                     opt_level=settings.opt_level)


def cache_key(plan: BuildPlan, target: Target) -> str:
    """sha256 of the canonical JSON of a build's identity: equal keys, interchangeable engines."""
    identity = {"key_version": KEY_VERSION, "plan": plan.to_dict(), "target": target.to_dict()}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class EngineEntry:
    """One built engine, as recorded in the manifest (``graphs[name]["engine"]``)."""

    plan: BuildPlan
    target: Target
    sha256: str
    bytes: int
    cache_key: str  # ``cache_key(plan, target)``
    layers: dict[str, int] = field(default_factory=dict)  # layer count per output type of the parsed network
    build_seconds: float = 0.0
    created: str = ""

    @property
    def file(self) -> str:
        return self.plan.engine_file

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "bytes": self.bytes, "cache_key": self.cache_key,
                "precision": self.plan.precision, "target": self.target.to_dict(), "plan": self.plan.to_dict(),
                "layers": self.layers, "build_seconds": self.build_seconds, "created": self.created}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineEntry:
        try:
            return cls(BuildPlan.from_dict(d["plan"]), Target.from_dict(d["target"]), d["sha256"], d["bytes"],
                       d["cache_key"], dict(d.get("layers", {})), d.get("build_seconds", 0.0), d.get("created", ""))
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineError(f"invalid engine entry in {MANIFEST} ({type(exc).__name__}: {exc}); "
                              "rebuild the engines with simvos-build --force") from exc


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def compatibility(entry: EngineEntry, device: Device) -> str | None:
    """Why the engine of ``entry`` cannot run on ``device``, or None if it can."""
    built, plan, cc = entry.target, entry.plan, device.compute_capability
    if built.platform != device.platform:
        return f"it was built on {built.platform} and this is {device.platform} (engines never move between platforms)"
    if built.library != device.library:
        return f"it was built with {built.library} and this process loads {device.library} (select {built.library})"
    if plan.version_compatible:
        if _version(device.version) < _version(built.version):
            return (f"it was built version-compatible with {built.library} {built.version}, which runs on that or "
                    f"a later version only, and this is {device.version}")
    elif device.version != built.version:
        return f"it was built with {built.library} {built.version} and this is {device.version}"
    if built.library == "tensorrt_rtx":
        if cc not in built.compute_capabilities:
            return (f"it was built for compute capability {', '.join(map(cc_text, built.compute_capabilities))} "
                    f"and this GPU is {device.gpu_name} ({cc_text(cc)})")
    elif plan.hardware_compatibility == "ampere_plus":
        if cc < AMPERE:
            return f"it was built for Ampere and newer GPUs and this GPU is {device.gpu_name} ({cc_text(cc)})"
    elif built.gpu_name != device.gpu_name:
        return (f"it was built for {built.gpu_name} and this GPU is {device.gpu_name} (engines are tuned to one "
                "GPU model unless built hardware-compatible)")
    return None


def rebuild_command(folder: str | Path, *, force: bool = True) -> str:
    """The ``simvos-build`` command line that (re)builds the engines of ``folder``."""
    return f"simvos-build {shlex.quote(str(folder))}" + (" --force" if force else "")


def find_entry(manifest: Manifest, graph: str) -> EngineEntry | None:
    if graph not in manifest.graphs:
        raise ManifestError(f"the export has no graph {graph!r}; it has {sorted(manifest.graphs)}")
    raw = manifest.graphs[graph].engine
    return None if raw is None else EngineEntry.from_dict(raw)


def check_engine(folder: str | Path, graph: str, device: Device) -> tuple[EngineEntry, Path]:
    """The entry and path of an engine that can run on ``device``; raises with the fix otherwise."""
    folder = Path(folder)
    manifest = read_manifest(folder, verify=False)
    entry, fix = find_entry(manifest, graph), rebuild_command(folder)
    if entry is None:
        raise EngineError(f"{folder} has no engine for {graph}; build it with: {rebuild_command(folder, force=False)}")
    path = folder / entry.file
    if entry.plan.onnx_sha256 != manifest.graphs[graph].sha256:
        raise EngineError(f"{path} was built from another {graph}.onnx than the folder holds now (stale); "
                          f"rebuild it with: {fix}")
    reason = compatibility(entry, device)
    if reason is not None:
        raise EngineCompatibilityError(f"cannot load {path}: {reason}; rebuild it here with: {fix}")
    if not path.is_file():
        raise EngineError(f"{path} is missing; rebuild it with: {fix}")
    if sha256_file(path) != entry.sha256:
        raise EngineError(f"{path} does not match the sha256 in {MANIFEST} (modified or corrupted); rebuild it "
                          f"with: {fix}")
    return entry, path


def is_reusable(folder: Path, entry: EngineEntry | None, key: str) -> bool:
    """True if ``entry`` was built with ``key`` and its file is intact."""
    if entry is None or entry.cache_key != key:
        return False
    path = folder / entry.file
    return path.is_file() and sha256_file(path) == entry.sha256


def record_engines(folder: str | Path, entries: list[EngineEntry]) -> None:
    """Store engine entries in ``manifest.json`` (``graphs[name]["engine"]``), atomically.

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
        graphs[entry.plan.graph]["engine"] = entry.to_dict()
    write_json_atomic(path, data)
