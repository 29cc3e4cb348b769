"""The streaming runtime: segment videos with the exported graphs, without PyTorch (docs/runtime.md).

    with VideoSegmenter.open("engines/T-480x864", backend="onnxruntime", threads=4) as seg:
        for labels in seg.segment(frames, first_mask):   # (H, W) uint8 per frame
            ...
"""

from .backends import AUTO, BACKENDS, Backend, BackendError, create_backend, unavailable_reason
from .geometry import Placement, place
from .segmenter import VideoSegmenter
from .session import VideoSession, VideoState

__all__ = ["AUTO", "BACKENDS", "Backend", "BackendError", "Placement", "VideoSegmenter", "VideoSession", "VideoState",
           "create_backend", "place", "unavailable_reason"]
