"""simvos-serve: the streaming runtime behind NVIDIA Triton Inference Server, and its Python client.

    with SegmentationClient("localhost:8001") as client:     # a running simvos-serve's gRPC port
        for labels in client.segment(frames, first_mask):    # as VideoSegmenter.segment; protocol: README.md
            ...
"""

from .client import RemoteVideo, SegmentationClient
from .launch import ServerProcess
from .protocol import MODEL, FrameRequest

__all__ = ["MODEL", "FrameRequest", "RemoteVideo", "SegmentationClient", "ServerProcess"]
