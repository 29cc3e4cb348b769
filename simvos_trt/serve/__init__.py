"""simvos-serve: the streaming runtime behind NVIDIA Triton Inference Server, and its Python client
``SegmentationClient`` (as ``VideoSegmenter``, remotely; protocol: README.md)."""

from .client import RemoteVideo, SegmentationClient
from .launch import ServerProcess
from .protocol import MODEL, FrameRequest

__all__ = ["MODEL", "FrameRequest", "RemoteVideo", "SegmentationClient", "ServerProcess"]
