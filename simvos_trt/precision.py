"""What an FP16 graph keeps in float32, defined once for the ONNX float16 pass and the PyTorch
FP16 emulation (docs/precision.md gives the reasons)."""

from __future__ import annotations

from dataclasses import dataclass

from .manifest import Graph, Precision

__all__ = ["FLOAT32_GRAPHS", "FLOAT32_INPUTS", "ISLANDS", "Island", "Precision", "graph_precision", "tensor_dtype"]


@dataclass(frozen=True)
class Island:
    """A part of the network computing in float32 inside an FP16 graph: an ONNX op type (``by == "op"``) or
    a module scoped ``/name/...`` (``by == "scope"``); outputs go back to float16 unless ``keep_float32``."""

    name: str
    by: str
    keep_float32: bool
    why: str


ISLANDS = (
    Island("LayerNormalization", "op", False, "mean and variance over C overflow or lose precision in float16"),
    Island("Sigmoid", "op", True, "probabilities leave the decoders in float32 for soft aggregation"),
    Island("frame_input", "scope", False, "uint8 -> normalised frame, as the official float32 preprocessing"),
    Island("refinement_weights", "scope", False,
           "token-refinement weights test exact values: 1 - sum(masks) == 1 below 3e-8 in float32, "
           "below 2.4e-4 in float16; a weight is suppressed only when exactly 0"),
)

#: Graphs that stay float32 whatever the precision: soft aggregation clamps at 1e-7 and
#: takes log-odds, meaningless in float16.
FLOAT32_GRAPHS = frozenset({Graph.AGGREGATE})

#: Graph inputs that stay float32 in an FP16 graph: masks feed the refinement weights.
FLOAT32_INPUTS = frozenset({"masks", "prob"})


def graph_precision(graph: str, precision: Precision) -> Precision:
    """The precision of one graph of an export made at ``precision``."""
    return Precision.FP32 if graph in FLOAT32_GRAPHS else precision


def tensor_dtype(name: str, graph: Precision, uint8_input: bool) -> str:
    """The numpy dtype of graph tensor ``name`` in a graph computing in ``graph`` precision: uint8 frames and
    labels, int64 padding, probabilities float32 in and out (``FLOAT32_INPUTS``, the Sigmoid island), the rest
    in the graph's precision."""
    if name == "labels" or (name == "frame" and uint8_input):
        return "uint8"
    if name == "padding":
        return "int64"
    if name in FLOAT32_INPUTS or name in ("objects", "background"):
        return "float32"
    return "float16" if graph == Precision.FP16 else "float32"
