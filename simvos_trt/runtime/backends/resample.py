"""Soft-aggregation outputs at the engine size -> at a resized video's frame size: the placement's box cropped,
bilinearly resized (half-pixel centres, no antialiasing: cv2.INTER_LINEAR) and reduced to labels (argmax, the
first channel wins ties). ``Resample`` describes it as a graph; the host way is ``resample_on_host``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from ...errors import MissingDependencyError
from ...manifest import OBJECTS_AXIS, GraphEntry, TensorSpec

#: The graph's name in messages and logs.
RESAMPLE = "resample"
#: ONNX opset of the resample graph (TensorRT 10's parser and ONNX Runtime take it).
RESAMPLE_OPSET = 17


@dataclass(frozen=True)
class Resample:
    """From (He, We) ``engine`` maps to (H, W) ``size`` frames: the frame's image is the engine's rows
    ``top:top+h`` and columns ``left:left+w`` (``box`` = (top, left, h, w)).

    Inputs (the aggregate graph's outputs): background (1, 1, He, We) and objects (K, 1, He, We) float32.
    Outputs: frame_background (1, 1, H, W), frame_objects (K, 1, H, W) float32 and labels (1, H, W) uint8
    channel indices (0 background, k the k-th object)."""

    engine: tuple[int, int]
    box: tuple[int, int, int, int]
    size: tuple[int, int]

    @cached_property
    def entry(self) -> GraphEntry:
        """The graph's tensors (what ``Backend.resample`` checks its inputs against)."""
        (He, We), (H, W) = self.engine, self.size
        inputs = (TensorSpec("background", "float32", (1, 1, He, We)),
                  TensorSpec("objects", "float32", (OBJECTS_AXIS, 1, He, We)))
        outputs = (TensorSpec("frame_background", "float32", (1, 1, H, W)),
                   TensorSpec("frame_objects", "float32", (OBJECTS_AXIS, 1, H, W)),
                   TensorSpec("labels", "uint8", (1, H, W)))
        return GraphEntry(f"{RESAMPLE}.onnx", "", inputs, outputs)

    def onnx_model(self) -> bytes:
        """The graph as a serialized ONNX model: Concat -> Slice (the box) -> Resize (linear, half_pixel) ->
        ArgMax -> Cast, and two Slices that split background and objects again."""
        try:
            import onnx
            from onnx import TensorProto, helper, numpy_helper
        except ImportError as err:
            raise MissingDependencyError("frames of another size than the engine's need the Python package onnx "
                                         "(a dependency of simvos-trt) on this backend: pip install onnx") from err
        top, left, h, w = self.box
        consts = {"box_starts": [top, left], "box_ends": [top + h, left + w], "hw_axes": [2, 3],
                  "frame_hw": list(self.size), "zero": [0], "one": [1], "end": [2**62]}
        nodes = [
            helper.make_node("Concat", ["background", "objects"], ["all"], axis=0),  # (K+1, 1, He, We)
            helper.make_node("Slice", ["all", "box_starts", "box_ends", "hw_axes"], ["crop"]),  # (K+1, 1, h, w)
            helper.make_node("Shape", ["crop"], ["crop_k1"], start=0, end=2),  # [K+1, 1]
            helper.make_node("Concat", ["crop_k1", "frame_hw"], ["sizes"], axis=0),  # [K+1, 1, H, W]
            helper.make_node("Resize", ["crop", "", "", "sizes"], ["prob"], mode="linear",
                             coordinate_transformation_mode="half_pixel"),  # (K+1, 1, H, W)
            helper.make_node("ArgMax", ["prob"], ["argmax"], axis=0, keepdims=0),  # (1, H, W), first index wins
            helper.make_node("Cast", ["argmax"], ["labels"], to=TensorProto.UINT8),
            helper.make_node("Slice", ["prob", "zero", "one", "zero"], ["frame_background"]),  # (1, 1, H, W)
            helper.make_node("Slice", ["prob", "one", "end", "zero"], ["frame_objects"]),  # (K, 1, H, W)
        ]
        kinds = {"float32": TensorProto.FLOAT, "uint8": TensorProto.UINT8}

        def values(specs: tuple[TensorSpec, ...]) -> list[onnx.ValueInfoProto]:
            return [helper.make_tensor_value_info(t.name, kinds[t.dtype], list(t.shape)) for t in specs]

        graph = helper.make_graph(nodes, RESAMPLE, values(self.entry.inputs), values(self.entry.outputs),
                                  [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in consts.items()])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", RESAMPLE_OPSET)],
                                  producer_name="simvos-trt")
        onnx.checker.check_model(model, full_check=True)
        return bytes(model.SerializeToString())


def resample_on_host(plan: Resample, background: np.ndarray, objects: np.ndarray) -> dict[str, np.ndarray]:
    """``plan`` with numpy and OpenCV, the same outputs as the graph: one plane at a time (contiguous, SIMD)
    resized into the output, the argmax kept as a running maximum."""
    top, left, h, w = plan.box
    H, W = plan.size
    planes = [*background[:, 0], *objects[:, 0]]  # K+1 of (He, We)
    maps = np.empty((len(planes), 1, H, W), np.float32)  # (K+1, 1, H, W)
    labels = np.zeros((1, H, W), np.uint8)
    best = None
    for c, plane in enumerate(planes):
        out = maps[c, 0]
        written = cv2.resize(plane[top : top + h, left : left + w], (W, H), dst=out, interpolation=cv2.INTER_LINEAR)
        assert written is out or np.shares_memory(written, out), "OpenCV did not resize into the output"
        if best is None:
            best = out.copy()
        else:
            np.putmask(labels[0], out > best, np.uint8(c))  # strictly greater: the first channel wins ties
            np.maximum(best, out, out=best)
    return {"frame_background": maps[:1], "frame_objects": maps[1:], "labels": labels}
