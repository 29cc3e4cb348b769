"""simvos-serve: the streaming runtime behind NVIDIA Triton Inference Server, and its Python client.

    from simvos_trt.serve import SegmentationClient

    with SegmentationClient("localhost:8001") as client:     # a running simvos-serve's gRPC port
        for labels in client.segment(frames, first_mask):    # as VideoSegmenter.segment
            ...

Modules: ``protocol`` (the wire protocol's names, ``FrameRequest``), ``sessions`` (the
server's open videos), ``server`` (the PyTriton model), ``client``, ``launch`` (a server
in a child process). PyTriton and tritonclient (the ``serve`` extra) are imported only
when a server or client is made. The protocol is documented in README.md beside this file.
"""

from .client import RemoteVideo, SegmentationClient
from .launch import ServerProcess
from .protocol import MODEL, FrameRequest

__all__ = ["MODEL", "FrameRequest", "RemoteVideo", "SegmentationClient", "ServerProcess"]
