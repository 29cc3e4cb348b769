"""Engine records in the manifest, in pure Python: what each engine was built from and for, whether it is
intact, and why it cannot run on a ``Device`` (docs/tensorrt.md)."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BackendError
from ..io import MANIFEST, write_json_atomic
from ..manifest import Manifest, ManifestError, sha256_file
from .plan import CC, BuildPlan, Target, cc_text

AMPERE = (8, 0)


@dataclass(frozen=True)
class Device:
    """Where an engine is to run: the TensorRT library selected here and the GPU."""

    library: str
    version: str
    platform: str
    gpu_name: str
    compute_capability: CC


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
            raise ManifestError(f"invalid engine entry in {MANIFEST} ({type(exc).__name__}: {exc}); "
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
    if built.ahead_of_time:
        if cc not in built.compute_capabilities:
            return (f"it was built for compute capability {', '.join(map(cc_text, built.compute_capabilities))} "
                    f"and this GPU is {device.gpu_name} ({cc_text(cc)})")
    elif plan.ampere_plus:
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
    """The engine recorded for ``graph``, or None when none is built yet."""
    if graph not in manifest.graphs:
        raise ManifestError(f"the export has no graph {graph!r}; it has {sorted(manifest.graphs)}")
    raw = manifest.graphs[graph].engine
    return None if raw is None else EngineEntry.from_dict(raw)


def check_engine(folder: str | Path, manifest: Manifest, graph: str, device: Device) -> tuple[EngineEntry, Path]:
    """The entry and path of the engine of ``graph`` recorded in ``folder``'s ``manifest`` (as read once by the
    caller) that can run on ``device``; raises with the fix otherwise."""
    folder = Path(folder)
    entry, fix = find_entry(manifest, graph), rebuild_command(folder)
    if entry is None:
        raise ManifestError(f"{folder} has no engine for {graph}; build it with: "
                            f"{rebuild_command(folder, force=False)}")
    path = folder / entry.file
    if entry.plan.onnx_sha256 != manifest.graphs[graph].sha256:
        raise ManifestError(f"{path} was built from another {graph}.onnx than the folder holds now (stale); "
                            f"rebuild it with: {fix}")
    reason = compatibility(entry, device)
    if reason is not None:
        raise BackendError(f"cannot load {path}: {reason}; rebuild it here with: {fix}")
    if not path.is_file():
        raise ManifestError(f"{path} is missing; rebuild it with: {fix}")
    if sha256_file(path) != entry.sha256:
        raise ManifestError(f"{path} does not match the sha256 in {MANIFEST} (modified or corrupted); rebuild it "
                            f"with: {fix}")
    return entry, path


def is_reusable(folder: Path, entry: EngineEntry | None, key: str) -> bool:
    """True if ``entry`` was built with ``key`` and its file is intact."""
    if entry is None or entry.cache_key != key:
        return False
    path = folder / entry.file
    return path.is_file() and sha256_file(path) == entry.sha256


def record_engines(folder: str | Path, entries: list[EngineEntry]) -> None:
    """Store engine entries in ``manifest.json`` (``graphs[name]["engine"]``), atomically, every other field kept."""
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
