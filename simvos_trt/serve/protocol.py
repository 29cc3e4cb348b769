"""The wire protocol of simvos-serve (README.md): tensor and parameter names, a request as a typed value."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import Field, dataclass, fields
from typing import Any

import numpy as np

from ..errors import InputError

#: The Triton model name, and its inputs and outputs.
MODEL = "simvos"
FRAME, MASK, REMOVE = "frame", "mask", "remove"
#: The inputs of a resume request (README.md, "Failover").
KEYFRAMES, KEYFRAME_LABELS, KEYFRAME_INDEX = "keyframes", "keyframe_labels", "keyframe_index"
REFERENCE_IDS, REFERENCE_KEYFRAMES = "reference_ids", "reference_keyframes"
RESUME_INPUTS = (KEYFRAMES, KEYFRAME_LABELS, KEYFRAME_INDEX, REFERENCE_IDS, REFERENCE_KEYFRAMES)
#: The (K, 1, He, We) float32 soft objects of a video's last frame: an output (``return_state``), and the optional
#: input of a resume request that makes it exact.
STATE = "state"
#: Every input: its numpy dtype and its Triton shape (-1: any size).
INPUTS: dict[str, tuple[type[np.generic], tuple[int, ...]]] = {
    FRAME: (np.uint8, (-1, -1, -1)), MASK: (np.uint8, (-1, -1)), REMOVE: (np.uint8, (-1,)),
    KEYFRAMES: (np.uint8, (-1, -1, -1, -1)), KEYFRAME_LABELS: (np.uint8, (-1, -1, -1)),
    KEYFRAME_INDEX: (np.int64, (-1,)), REFERENCE_IDS: (np.uint8, (-1,)), REFERENCE_KEYFRAMES: (np.uint8, (-1,)),
    STATE: (np.float32, (-1, -1, -1, -1))}
LABELS, PROB, OBJECT_IDS = "labels", "prob", "object_ids"
#: Every output: its numpy dtype and its Triton shape.
OUTPUTS: dict[str, tuple[type[np.generic], tuple[int, ...]]] = {
    LABELS: (np.uint8, (-1, -1)), OBJECT_IDS: (np.uint8, (-1,)), PROB: (np.float32, (-1, -1, -1)),
    STATE: (np.float32, (-1, -1, -1, -1))}
#: Errors the server raises on purpose start with this, on the last line of Triton's message.
ERROR_MARKER = "simvos-serve error: "
#: The header (gRPC metadata) of each client request: a key for sticky routing of a video behind a load balancer.
ROUTING_HEADER = "x-simvos-video-id"
#: Longest accepted video id (it is also a routing key: keep it short).
MAX_ID_LENGTH = 128
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
#: The address a server listens on unless told otherwise (``--host``): this machine only.
LOOPBACK = "127.0.0.1"


def grpc_address(url: object) -> str:
    """``HOST:PORT`` of a simvos-serve gRPC endpoint; a bare ``HOST`` gets the default port 8001."""
    if not isinstance(url, str) or not url.strip():
        raise InputError(f"server {url!r}: expected HOST:PORT (simvos-serve's gRPC port, default {GRPC_PORT})")
    host, sep, port = url.rpartition(":")
    if not sep or host.endswith(":") or port.endswith("]"):  # no port (an IPv6 address goes in brackets)
        return f"{url}:{GRPC_PORT}"
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"server {url!r}: expected HOST:PORT with a port in 1..65535 (simvos-serve's gRPC "
                         f"port, default {GRPC_PORT})")
    return url


@dataclass(frozen=True)
class FrameRequest:
    """One request of a video: its parameters, and the tensors it carries (README.md): ``frame`` (H, W, C) uint8,
    ``mask`` (H, W) uint8, ``remove`` (R,) uint8 ids; a resume request carries the ``RESUME_INPUTS`` instead."""

    video_id: str
    start: bool = False
    resume: bool = False
    end: bool = False
    frame_index: int = -1
    return_prob: bool = False
    return_state: bool = False
    bgr: bool = False
    frame: np.ndarray | None = None
    mask: np.ndarray | None = None
    remove: np.ndarray | None = None
    keyframes: np.ndarray | None = None
    keyframe_labels: np.ndarray | None = None
    keyframe_index: np.ndarray | None = None
    reference_ids: np.ndarray | None = None
    reference_keyframes: np.ndarray | None = None
    state: np.ndarray | None = None

    def __post_init__(self) -> None:
        video = f"video {self.video_id!r}"
        if not self.video_id or len(self.video_id) > MAX_ID_LENGTH or not self.video_id.isprintable():
            raise InputError(f"video_id: got {self.video_id!r}, expected 1..{MAX_ID_LENGTH} printable characters "
                             "naming the video (a UUID, say)")
        if self.start:
            if self.frame is None or self.mask is None:
                raise InputError(f"{video}: start=true needs the first frame ('{FRAME}') and its index mask "
                                 f"('{MASK}')")
            if self.remove is not None or self.resume:
                raise InputError(f"{video}: start=true takes no '{REMOVE}' and no resume=true")
        resume_tensors = [name for name in RESUME_INPUTS if getattr(self, name) is not None]
        expected = list(RESUME_INPUTS) if self.resume else []
        if resume_tensors != expected:
            raise InputError(f"{video}: resume=true takes exactly the inputs {list(RESUME_INPUTS)}; got "
                             f"{resume_tensors} with resume={str(self.resume).lower()}")
        if self.resume and any(t is not None for t in (self.frame, self.mask, self.remove)):
            raise InputError(f"{video}: a resume request carries no '{FRAME}', '{MASK}' or '{REMOVE}'; send the "
                             "next frame in a request of its own")
        if self.state is not None and not self.resume:
            raise InputError(f"{video}: '{STATE}' is an input of resume requests only")
        if self.mask is not None and self.frame is None:
            raise InputError(f"{video}: '{MASK}' states objects on the request's frame: send it with '{FRAME}'")
        may_carry_no_frame = self.end or self.resume or self.remove is not None
        if self.frame is None and not may_carry_no_frame:
            raise InputError(f"{video}: no '{FRAME}'; only a request with end=true, '{REMOVE}' or resume=true may "
                             "carry none")

    def parameters(self) -> dict[str, Any]:
        """The Triton request parameters of this request (defaults left out; ``video_id`` has none)."""
        return {f.name: getattr(self, f.name) for f in _parameter_fields() if getattr(self, f.name) != f.default}

    def tensors(self) -> dict[str, np.ndarray]:
        """The tensors this request carries, by name."""
        return {name: getattr(self, name) for name in INPUTS if getattr(self, name) is not None}

    @classmethod
    def parse(cls, tensors: Mapping[str, np.ndarray], parameters: Mapping[str, Any]) -> FrameRequest:
        """Check a request's parameters (names and types) and build it; raises InputError."""
        expected = {f.name: str if f.name == "video_id" else type(f.default) for f in _parameter_fields()}
        for name, value in parameters.items():
            kind = expected.get(name)
            if kind is None:
                raise InputError(f"unknown parameter {name!r}; expected {sorted(expected)}")
            if type(value) is not kind:
                raise InputError(f"parameter {name!r}: got {value!r}, expected a {kind.__name__}")
        if "video_id" not in parameters:
            raise InputError("no parameter 'video_id': every request names its video")
        arrays: dict[str, Any] = {name: tensors[name] for name in INPUTS if name in tensors}
        return cls(**parameters, **arrays)


def _parameter_fields() -> list[Field[Any]]:
    return [f for f in fields(FrameRequest) if f.name not in INPUTS]


def not_open(video_id: str, why: str | None) -> str:
    """The server's answer to a request for a video it does not hold (``why`` it was closed, if it was)."""
    state = f"was closed: {why}" if why else "was never started"
    return (f"video {video_id!r} is not open (it {state}); a video's first request carries start=true with its "
            "first frame and mask")


def is_not_open(message: str | None, video_id: str) -> bool:
    """Whether a server's error ``message`` (None: the server gave none) says it does not hold ``video_id`` (never
    started, closed, evicted)."""
    return message is not None and message.startswith(f"video {video_id!r} is not open (")


def server_message(message: str) -> str | None:
    """The server's own error text inside a Triton error message (None if it has none)."""
    return message.rsplit(ERROR_MARKER, 1)[1].splitlines()[0].strip() if ERROR_MARKER in message else None
