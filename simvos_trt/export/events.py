"""The ONNX export's progress event, importable without torch (simvos-bench reports it)."""

from __future__ import annotations

from dataclasses import dataclass

from ..manifest import Graph


@dataclass(frozen=True)
class GraphExported:
    """``export_folder``'s progress: one graph written, its seconds, bytes on disk and nodes (traced, final)."""

    name: Graph
    seconds: float
    bytes: int
    nodes_exported: int
    nodes_final: int
