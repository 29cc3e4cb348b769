"""What to build, in pure Python: the options (``BuildSettings``), the library and GPUs (``Target``), one graph's
``BuildPlan`` and its ``cache_key`` (docs/tensorrt.md)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from ..errors import InputError
from ..manifest import OBJECTS_AXIS, GraphEntry, Manifest, Precision
from .library import LibraryName

#: Bump when the way engines are built changes in a way the other key fields miss.
KEY_VERSION = 2
#: TensorRT-RTX's ahead-of-time targets (``trt.ComputeCapability``) that build these graphs: Hopper is not
#: among them, and for Turing (7.5) TensorRT-RTX 1.7 refuses the encoders' attention MatMul (measured).
RTX_TARGETS = {(8, 0): "SM80", (8, 6): "SM86", (8, 9): "SM89", (12, 0): "SM120", (12, 1): "SM121"}
DEFAULT_RTX_TARGETS = ((8, 0),)  # the A100 of the paper's measurements

CC = tuple[int, int]


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
class Target:
    """The library an engine is built with and its GPUs: TensorRT's one ``gpu_name``, or (TensorRT-RTX,
    ahead of time, ``gpu_name`` empty) ``compute_capabilities``."""

    library: LibraryName
    version: str
    platform: str
    compute_capabilities: tuple[CC, ...]
    gpu_name: str = ""

    @property
    def ahead_of_time(self) -> bool:
        return self.library == LibraryName.TENSORRT_RTX

    def __str__(self) -> str:
        where = self.gpu_name or "compute capability " + ", ".join(cc_text(c) for c in self.compute_capabilities)
        return f"{self.library} {self.version} for {where} ({self.platform})"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "compute_capabilities": [list(c) for c in self.compute_capabilities]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Target:
        ccs = tuple(tuple(c) for c in d["compute_capabilities"])
        return cls(LibraryName(d["library"]), d["version"], d["platform"], ccs, d.get("gpu_name", ""))


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
                             f"{', '.join(cc_text(c) for c in RTX_TARGETS)} (not Turing, 7.5: the encoders' "
                             "attention does not compile for it; not Hopper, 9.0)")


def check_options(settings: BuildSettings, library: LibraryName) -> None:
    """Refuse, in one line, the options the library cannot honour (measured with TensorRT-RTX 1.7)."""
    if library == LibraryName.TENSORRT_RTX:
        if settings.version_compatible:
            raise InputError("--version-compatible: TensorRT-RTX cannot build version-compatible engines "
                             "(it lacks the lean runtime, libnvinfer_lean); drop the option or build with "
                             "TensorRT (--library tensorrt)")
        if settings.hardware_compatible:
            raise InputError("--hardware-compatible: TensorRT-RTX does not support hardware compatibility "
                             "levels; list the GPUs with --compute-capability instead")
    elif settings.compute_capabilities:
        raise InputError("--compute-capability: TensorRT builds for the GPU it runs on; ahead-of-time "
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


class HardwareCompatibility(StrEnum):
    NONE = "none"  # the engine runs on the GPU model it was built on
    AMPERE_PLUS = "ampere_plus"  # TensorRT only: on any Ampere or newer GPU, slower


@dataclass(frozen=True)
class BuildPlan:
    """Everything ``trt_build`` needs to build one graph; ``tf32`` False keeps float32 graphs exact."""

    graph: str
    onnx_file: str
    onnx_sha256: str
    precision: Precision  # the graph's (``GraphEntry.precision``)
    profile: dict[str, ShapeRange]
    tf32: bool
    hardware_compatibility: HardwareCompatibility
    version_compatible: bool
    workspace_mib: int | None
    opt_level: int

    @property
    def ampere_plus(self) -> bool:
        return self.hardware_compatibility == HardwareCompatibility.AMPERE_PLUS

    @property
    def engine_file(self) -> str:
        return f"{self.graph}.engine"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "profile": {k: v.to_dict() for k, v in sorted(self.profile.items())}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BuildPlan:
        profile = {k: ShapeRange.from_dict(v) for k, v in d["profile"].items()}
        return cls(**{**d, "profile": profile, "precision": Precision(d["precision"]),
                      "hardware_compatibility": HardwareCompatibility(d["hardware_compatibility"])})


def plan_build(name: str, graph: GraphEntry, objects: tuple[int, int, int], settings: BuildSettings) -> BuildPlan:
    return BuildPlan(graph=name, onnx_file=graph.file, onnx_sha256=graph.sha256, precision=graph.precision,
                     profile=plan_profile(graph, objects), tf32=False,
                     hardware_compatibility=(HardwareCompatibility.AMPERE_PLUS if settings.hardware_compatible
                                             else HardwareCompatibility.NONE),
                     version_compatible=settings.version_compatible, workspace_mib=settings.workspace_mib,
                     opt_level=settings.opt_level)


def cache_key(plan: BuildPlan, target: Target) -> str:
    """sha256 of the canonical JSON of a build's identity: equal keys, interchangeable engines."""
    identity = {"key_version": KEY_VERSION, "plan": plan.to_dict(), "target": target.to_dict()}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
