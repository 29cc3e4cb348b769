"""The Python client of simvos-serve (Triton's gRPC protocol): the runtime's segmenter API, remotely."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ..errors import InputError, ServeError, require
from ..runtime.backends.base import Closing
from ..runtime.video import Result, Video, segment_frames
from .protocol import LABELS, MODEL, OBJECT_IDS, PROB, ROUTING_HEADER, FrameRequest, grpc_address, server_message


class SegmentationClient(Closing):
    """A thread-safe connection to the simvos-serve gRPC endpoint ``url`` (HOST[:PORT]), ``timeout`` seconds
    per request; ServeError when the server cannot be reached or serves no ready ``simvos`` model."""

    def __init__(self, url: str, *, timeout: float = 600.0) -> None:
        require("tritonclient", "client", "the simvos-serve client")
        import tritonclient.grpc as grpc
        from tritonclient.utils import InferenceServerException, np_to_triton_dtype

        url = grpc_address(url)
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

    def close(self) -> None:
        self._client.close()

    def video(self, video_id: str | None = None) -> RemoteVideo:
        """A new, not yet started, video on the server (a random id unless given)."""
        return RemoteVideo(self, video_id or uuid.uuid4().hex)

    def segment(self, frames: Iterable[np.ndarray], first_mask: np.ndarray, *, bgr: bool = False,
                return_prob: bool = False) -> Iterator[Result]:
        """As ``VideoSegmenter.segment``, through the server; the video is ended when the iteration ends."""
        with self.video() as video:
            yield from segment_frames(video, frames, first_mask, bgr=bgr, return_prob=return_prob)

    def infer(self, request: FrameRequest) -> dict[str, np.ndarray]:
        """Send one request as it is; returns its output tensors by name, or raises ServeError with the
        server's reason."""
        inputs = []
        for name, array in request.tensors().items():
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


class RemoteVideo(Video):
    """One video on the server: ``start``, ``step``... as ``VideoSession``, then ``close`` (or a ``with`` block)."""

    def __init__(self, client: SegmentationClient, video_id: str) -> None:
        self.client, self.video_id = client, video_id
        self._index = 0
        self._ids: np.ndarray | None = None
        self._open = False

    def __exit__(self, *exc: object) -> None:
        try:
            self.close()
        except ServeError:
            if exc[1] is None:  # no error in the block: a failed end is the error
                raise

    @property
    def object_ids(self) -> np.ndarray:
        if self._ids is None:
            raise InputError("object_ids before start(): call start(first_frame, first_mask) first")
        return self._ids

    def _start(self, frame: np.ndarray, mask: np.ndarray, bgr: bool, return_prob: bool) -> Result:
        self._index = 0
        return self._send(frame, start=True, mask=mask, bgr=bgr, return_prob=return_prob)

    def _step(self, frame: np.ndarray, mask: np.ndarray | None, return_prob: bool) -> Result:
        if mask is not None:  # the protocol takes masks on later frames from issue 19's serve work on
            raise InputError("this client sends a mask with the first frame only (start)")
        return self._send(frame, return_prob=return_prob)

    def remove_objects(self, ids: Iterable[int]) -> None:
        raise InputError("this client cannot remove objects yet (the serve protocol has no removal)")

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
