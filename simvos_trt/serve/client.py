"""The Python client of simvos-serve (Triton's gRPC protocol): the runtime's segmenter API, remotely.

    from simvos_trt.serve import SegmentationClient

    with SegmentationClient("localhost:8001") as client:
        for labels in client.segment(frames, first_mask):   # as VideoSegmenter.segment
            ...
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, Literal, overload

import numpy as np

from ..errors import InputError, ServeError, require
from ..runtime.geometry import frame_size
from ..runtime.session import Result, check_mask
from .protocol import FRAME, LABELS, MASK, MODEL, OBJECT_IDS, PROB, ROUTING_HEADER, FrameRequest, server_message


class SegmentationClient:
    """A connection to a simvos-serve server; thread-safe (one ``RemoteVideo`` per video).

    Args:
        url: ``HOST:PORT`` of the server's gRPC endpoint (simvos-serve --grpc-port, default 8001).
        timeout: seconds one request may take before it fails.
    Raises:
        ServeError: the server cannot be reached, or serves no ready ``simvos`` model.
    """

    def __init__(self, url: str, *, timeout: float = 600.0) -> None:
        require("tritonclient", "client", "the simvos-serve client")
        import tritonclient.grpc as grpc
        from tritonclient.utils import InferenceServerException, np_to_triton_dtype

        self.url, self.timeout = url, timeout
        self._grpc, self._error, self._dtype = grpc, InferenceServerException, np_to_triton_dtype
        try:
            self._client = grpc.InferenceServerClient(url)
            ready = self._client.is_model_ready(MODEL)
        except InferenceServerException as exc:
            raise ServeError(f"server {url}: cannot reach it ({_one_line(exc.message())}); start one with "
                             "simvos-serve --engine-dir DIR and give its gRPC port (default 8001)") from None
        if not ready:
            raise ServeError(f"server {url} has no ready model '{MODEL}': is it a simvos-serve server?")

    def __enter__(self) -> SegmentationClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def video(self, video_id: str | None = None) -> RemoteVideo:
        """A new, not yet started, video on the server (a random id unless given)."""
        return RemoteVideo(self, video_id or uuid.uuid4().hex)

    def segment(self, frames: Iterable[np.ndarray], first_mask: np.ndarray, *, bgr: bool = False,
                return_prob: bool = False) -> Iterator[Result]:
        """As ``VideoSegmenter.segment``, through the server; the video is ended when the iteration ends."""
        it = iter(frames)
        first = next(it, None)
        if first is None:
            raise InputError("frames: the video has no frame")
        with self.video() as video:
            yield video.start(first, first_mask, bgr=bgr, return_prob=return_prob)
            for frame in it:
                yield video.step(frame, return_prob=return_prob)

    def infer(self, request: FrameRequest) -> dict[str, np.ndarray]:
        """Send one request as it is (no checks here); returns its output tensors by name.

        Raises:
            ServeError: the server refused the request (its message says why) or failed.
        """
        inputs = []
        for name, array in ((FRAME, request.frame), (MASK, request.mask)):
            if array is not None:
                tensor = self._grpc.InferInput(name, list(array.shape), self._dtype(array.dtype))
                tensor.set_data_from_numpy(np.ascontiguousarray(array))
                inputs.append(tensor)
        try:
            result = self._client.infer(MODEL, inputs, parameters=request.parameters(), client_timeout=self.timeout,
                                        headers={ROUTING_HEADER: request.video_id})
        except self._error as exc:
            text = exc.message() or str(exc)
            raise ServeError(f"server {self.url}: {server_message(text) or _one_line(text)}") from None
        return {out.name: result.as_numpy(out.name) for out in result.get_response().outputs}


class RemoteVideo:
    """One video on the server: ``start``, ``step``... as ``VideoSession``, then ``close`` (or a ``with`` block)."""

    def __init__(self, client: SegmentationClient, video_id: str) -> None:
        self.client, self.video_id = client, video_id
        self._index = 0
        self._ids: np.ndarray | None = None
        self._open = False

    def __enter__(self) -> RemoteVideo:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.close()
        except ServeError:
            if exc is None:
                raise

    @property
    def object_ids(self) -> np.ndarray:
        """(K,) uint8 ids of the video's objects (channel i of a probability map is ids[i-1])."""
        if self._ids is None:
            raise InputError("object_ids before start(): call start(first_frame, first_mask) first")
        return self._ids

    @overload
    def start(self, frame: np.ndarray, mask: np.ndarray, *, bgr: bool = ...,
              return_prob: Literal[False] = ...) -> np.ndarray: ...

    @overload
    def start(self, frame: np.ndarray, mask: np.ndarray, *, bgr: bool = ..., return_prob: bool) -> Result: ...

    def start(self, frame: np.ndarray, mask: np.ndarray, *, bgr: bool = False, return_prob: bool = False) -> Result:
        """As ``VideoSession.start``: returns the first mask (and with ``return_prob`` its probabilities)."""
        mask = check_mask(mask, frame_size(frame))
        self._index = 0
        return self._send(frame, start=True, mask=mask, bgr=bgr, return_prob=return_prob)

    @overload
    def step(self, frame: np.ndarray, *, return_prob: Literal[False] = ...) -> np.ndarray: ...

    @overload
    def step(self, frame: np.ndarray, *, return_prob: bool) -> Result: ...

    def step(self, frame: np.ndarray, *, return_prob: bool = False) -> Result:
        """As ``VideoSession.step``: (H, W) uint8 labels (and with ``return_prob`` the probabilities)."""
        self.object_ids  # noqa: B018 - raises before start
        frame_size(frame)
        return self._send(frame, return_prob=return_prob)

    def close(self) -> None:
        """End the video on the server, freeing its state (idempotent)."""
        if self._open:
            self._open = False
            self.client.infer(FrameRequest(self.video_id, end=True))

    def _send(self, frame: np.ndarray, **options: Any) -> Result:
        frame = frame[:, :, None] if frame.ndim == 2 else frame
        out = self.client.infer(FrameRequest(self.video_id, frame_index=self._index, frame=frame, **options))
        self._index += 1
        self._ids, self._open = out[OBJECT_IDS], True
        return (out[LABELS], out[PROB]) if options.get("return_prob") else out[LABELS]


def _one_line(text: str) -> str:
    return " ".join(text.split())[:400]
