"""The manifest of an export folder: what was exported, from what, and how to feed it; the contract between
export and runtime (docs/design.md), pure Python, written last, atomically."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from .config import SimVOSConfig
from .errors import InputError, check_int, check_type
from .io import MANIFEST

FORMAT = "simvos-trt/2"
OBJECTS_AXIS = "objects"


class ManifestError(InputError):
    """An export folder is missing, incomplete, tampered with, or from an incompatible version."""


class Graph(StrEnum):
    """The five graphs of an export (a str: usable wherever a graph name is)."""

    QUERY_ENCODER = "query_encoder"
    MEMORY_ENCODER = "memory_encoder"
    JOINT_DECODER_1MEM = "joint_decoder_1mem"
    JOINT_DECODER_2MEM = "joint_decoder_2mem"
    AGGREGATE = "aggregate"


GRAPHS = tuple(Graph)


class Precision(StrEnum):
    """The precision of an export's graphs (and so of its strongly typed engines); float32 islands and the
    graphs kept float32 are in ``simvos_trt.precision``."""

    FP16 = "fp16"
    FP32 = "fp32"

#: Each graph's input and output names, in order (``padding`` only where frames are uint8).
GRAPH_TENSORS: dict[Graph, tuple[tuple[str, ...], tuple[str, ...]]] = {
    Graph.QUERY_ENCODER: (("frame", "padding"), ("query",)),
    Graph.MEMORY_ENCODER: (("frame", "padding", "masks"), ("memory",)),
    Graph.JOINT_DECODER_1MEM: (("query", "memory_first"), ("prob",)),
    Graph.JOINT_DECODER_2MEM: (("query", "memory_first", "memory_prev"), ("prob",)),
    Graph.AGGREGATE: (("prob",), ("background", "objects", "labels")),
}
WeightsKind = Literal["official", "mae", "random", "golden"]


@dataclass(frozen=True)
class Weights:
    """Where an export's weights came from (``sha256`` of the file where there is one)."""

    kind: WeightsKind
    path: str | None = None
    sha256: str | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("official", "mae", "random", "golden"):
            raise ValueError(f"weights kind {self.kind!r} is not official, mae, random or golden")

    @classmethod
    def from_file(cls, kind: WeightsKind, path: str | Path, seed: int | None = None) -> Weights:
        return cls(kind, str(path), sha256_file(path), seed)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "sha256": self.sha256, "seed": self.seed}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Weights:
        return cls(d["kind"], d.get("path"), d.get("sha256"), d.get("seed"))


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: ``shape`` holds ints and the string ``objects`` for the batch."""

    name: str
    dtype: str  # numpy dtype name: float32, uint8, int64
    shape: tuple[int | str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        return cls(d["name"], d["dtype"], tuple(d["shape"]))

    def concrete(self, objects: int) -> tuple[int, ...]:
        """The shape with the object axis set to ``objects``."""
        return tuple(objects if d == OBJECTS_AXIS else int(d) for d in self.shape)


@dataclass(frozen=True)
class GraphEntry:
    file: str
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    nodes_exported: int = 0
    nodes_final: int = 0
    engine: dict[str, Any] | None = None  # the built engine's record (``trt.records.EngineEntry``)
    precision: Precision = Precision.FP32  # what the graph computes in (``precision.graph_precision``)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "precision": self.precision,
                "inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs],
                "nodes_exported": self.nodes_exported, "nodes_final": self.nodes_final, "engine": self.engine}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GraphEntry:
        return cls(d["file"], d["sha256"], tuple(TensorSpec.from_dict(t) for t in d["inputs"]),
                   tuple(TensorSpec.from_dict(t) for t in d["outputs"]),
                   d.get("nodes_exported", 0), d.get("nodes_final", 0), d.get("engine"), Precision(d["precision"]))


@dataclass(frozen=True)
class Manifest:
    """Everything a backend needs to know about an export folder."""

    config: SimVOSConfig
    height: int
    width: int
    uint8_input: bool
    max_objects: int
    opset: int
    checkpoint: Weights
    graphs: dict[str, GraphEntry]
    precision: Precision = Precision.FP32  # of the export (``aggregate`` is float32 in every export)
    versions: dict[str, str] = field(default_factory=dict)
    variant: str | None = None
    created: str = ""
    format: str = FORMAT

    @property
    def grid(self) -> tuple[int, int]:
        return self.height // 16, self.width // 16

    @property
    def memory_tokens(self) -> int:
        return self.config.memory_tokens(self.grid)

    @property
    def fingerprint(self) -> str:
        """A short id of the graphs themselves (their sha256s): equal for copies of one export."""
        digest = hashlib.sha256(" ".join(sorted(g.sha256 for g in self.graphs.values())).encode())
        return digest.hexdigest()[:12]

    def check(self) -> None:
        """Raise ValueError when a field has the wrong type or disagrees with a recorded tensor shape."""
        for name in ("height", "width"):
            check_int(name, getattr(self, name), 16)
            if getattr(self, name) % 16:
                raise ValueError(f"{name}: {getattr(self, name)} is not a multiple of 16")
        check_int("objects_profile.max", self.max_objects, 1, 255)
        check_type("uint8_input", self.uint8_input, bool, "true or false")
        expected = tensor_shapes(self.config, self.height, self.width, self.uint8_input)
        for graph, g in self.graphs.items():
            for t in (*g.inputs, *g.outputs):
                if t.name in expected and t.shape != expected[t.name]:
                    raise ValueError(f"graph {graph}'s {t.name} is recorded as {t.shape}, but the "
                                     f"{self.height}x{self.width} {self.config.name} fields give {expected[t.name]}")

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "variant": self.variant, "config": self.config.to_dict(),
                "precision": self.precision, "height": self.height, "width": self.width, "grid": list(self.grid),
                "memory_tokens": self.memory_tokens, "uint8_input": self.uint8_input,
                "objects_profile": {"min": 1, "opt": min(2, self.max_objects), "max": self.max_objects},
                "opset": self.opset, "checkpoint": self.checkpoint.to_dict(), "versions": self.versions,
                "created": self.created, "graphs": {k: g.to_dict() for k, g in self.graphs.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        if d.get("format") != FORMAT:
            raise ManifestError(f"manifest format {d.get('format')!r} is not {FORMAT!r}: the folder was exported by an "
                                "incompatible simvos-trt version; export it again with this version (simvos-export)")
        return cls(config=SimVOSConfig.from_dict(d["config"]), height=d["height"], width=d["width"],
                   uint8_input=d["uint8_input"], max_objects=d["objects_profile"]["max"],
                   opset=d["opset"], checkpoint=Weights.from_dict(d["checkpoint"]),
                   graphs={k: GraphEntry.from_dict(g) for k, g in d["graphs"].items()},
                   precision=Precision(d["precision"]),
                   versions=d.get("versions", {}), variant=d.get("variant"), created=d.get("created", ""))


def tensor_shapes(config: SimVOSConfig, height: int, width: int,
                  uint8_input: bool) -> dict[str, tuple[int | str, ...]]:
    """The shape of every graph tensor (``GRAPH_TENSORS``) of an export of ``config`` at ``height`` x ``width``,
    ``OBJECTS_AXIS`` for the object batch."""
    H, W, C, B = height, width, config.embed_dim, OBJECTS_AXIS
    grid = (H // 16, W // 16)
    frame = (1, H, W, 3) if uint8_input else (1, 3, H, W)
    memory, planes = (B, config.memory_tokens(grid), C), (B, 1, H, W)
    return {"frame": frame, "padding": (4,), "masks": planes, "query": (1, grid[0] * grid[1], C),
            "memory": memory, "memory_first": memory, "memory_prev": memory, "prob": planes, "objects": planes,
            "background": (1, 1, H, W), "labels": (1, H, W)}


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(folder: str | Path, *, verify: bool = True) -> Manifest:
    """Read and check an export folder's manifest; with ``verify``, every graph must match its sha256."""
    check_type("folder", folder, (str, os.PathLike), "the path of an export folder")
    folder = Path(folder)
    path = folder / MANIFEST
    if folder.is_file():
        raise ManifestError(f"{folder} is a file, not an export folder; give the folder holding {MANIFEST}")
    if not folder.is_dir():
        raise ManifestError(f"export folder {folder} does not exist; run simvos-export first")
    if not path.is_file():
        raise ManifestError(f"{folder} has no {MANIFEST}: it is not a complete export (interrupted?); "
                            "run simvos-export again")
    try:
        manifest = Manifest.from_dict(json.loads(path.read_text()))
        manifest.check()
    except ManifestError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ManifestError(f"{path} is not a valid manifest ({type(exc).__name__}: {exc}); it was edited or "
                            "is corrupt: export again with simvos-export") from exc
    if verify:
        for name, g in manifest.graphs.items():
            f = folder / g.file
            if not f.is_file():
                raise ManifestError(f"{folder}: graph {name} ({g.file}) is missing; export again")
            if sha256_file(f) != g.sha256:
                raise ManifestError(f"{folder}: {g.file} does not match the sha256 in {MANIFEST} (modified or "
                                    "corrupted); export again")
    return manifest
