"""The streaming runtime: segment videos with the exported graphs, without PyTorch.

    from simvos_trt.runtime import VideoSegmenter

    with VideoSegmenter.open("engines/T-480x864", backend="onnxruntime", threads=4) as seg:
        for labels in seg.segment(frames, first_mask):   # (H, W) uint8 per frame
            ...

Modules: ``segmenter`` (``VideoSegmenter``), ``session`` (``VideoSession``, the typed
``VideoState``), ``geometry`` (frame placement in the engine input and back),
``backends`` (ONNX Runtime, torch, TensorRT: unverified on a GPU), ``png`` (palette
PNGs), ``video_io`` (frame folders and video files). Nothing here imports torch except
the torch backend, nor tensorrt except the TensorRT backend, when they are opened.
"""

from .backends import BACKENDS, Backend, BackendError, create_backend
from .geometry import Placement, place
from .segmenter import VideoSegmenter
from .session import VideoSession, VideoState

__all__ = ["BACKENDS", "Backend", "BackendError", "Placement", "VideoSegmenter", "VideoSession", "VideoState",
           "create_backend", "place"]
