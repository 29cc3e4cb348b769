"""The streaming runtime: segment videos with the exported graphs, without PyTorch (``VideoSegmenter``;
usage: README.md, design: docs/runtime.md)."""

from .backends import AUTO, BACKENDS, Backend, BackendError, backend_options, create_backend, unavailable_reason
from .geometry import Placement, place
from .segmenter import VideoSegmenter
from .session import Keyframe, VideoSession, VideoState

__all__ = ["AUTO", "BACKENDS", "Backend", "BackendError", "Keyframe", "Placement", "VideoSegmenter", "VideoSession",
           "VideoState", "backend_options", "create_backend", "place", "unavailable_reason"]
