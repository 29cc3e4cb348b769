"""``RemoteVideo``: one video on simvos-serve, with what the client keeps to re-prime it on another server
(README.md, "Failover")."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from .. import processing
from ..errors import InputError, ServeError, ServerUnreachable, VideoLost
from ..runtime.session import Keyframe
from ..runtime.video import Result, Video
from .protocol import LABELS, OBJECT_IDS, PROB, STATE, FrameRequest

if TYPE_CHECKING:
    from .client import Endpoint, SegmentationClient
    from .shm import SharedRegion

log = logging.getLogger(__name__)


class RemoteVideo(Video):
    """One video on the servers: ``start``, ``step``, ``remove_objects`` as ``VideoSession``, then ``close`` (or a
    ``with`` block); when its server fails or no longer holds it, it is re-primed on a live server and the failed
    request is sent again (README.md, "Failover"). ``server`` says where it is, ``moves`` how often it was re-primed."""

    def __init__(self, client: SegmentationClient, video_id: str) -> None:
        self.client, self.video_id = client, video_id
        self.moves = 0
        self._endpoint: Endpoint | None = None
        self._region: SharedRegion | None = None
        self._ids: np.ndarray | None = None
        self._bgr = False
        self._references: dict[int, Keyframe] = {}  # object id -> its reference keyframe
        self._last: Keyframe | None = None
        self._state: np.ndarray | None = None  # the last frame's soft objects (exact_failover)

    @property
    def server(self) -> str | None:
        """``HOST:PORT`` of the server the video is on now (None before ``start`` and after ``close``)."""
        return None if self._endpoint is None else self._endpoint.url

    @property
    def object_ids(self) -> np.ndarray:
        if self._ids is None:
            raise InputError(f"video {self.video_id!r} is not started; call start(first_frame, first_mask) first")
        return self._ids

    def __exit__(self, *exc: object) -> None:
        try:
            self.close()
        except ServeError:
            if exc[1] is None:  # no error in the block: a failed end is the error
                raise

    def close(self) -> None:
        """End the video on its server, freeing its state there and here (idempotent)."""
        endpoint, self._endpoint = self._endpoint, None
        try:
            if endpoint is not None:
                self.client.infer(FrameRequest(self.video_id, end=True), endpoint)
                if self._region is not None:
                    endpoint.give_back(self._region)
                    self._region = None
        except (ServerUnreachable, VideoLost):
            pass  # nothing is left to end there
        finally:
            self._drop_region()
            self._references, self._last, self._state = {}, None, None  # object_ids stay readable, as locally

    def _start(self, frame: np.ndarray, mask: np.ndarray, bgr: bool, return_prob: bool) -> Result:
        self.close()  # a restart: the video begins anew, wherever it is placed now
        self._endpoint, self._bgr = self.client.place(self.video_id), bgr
        frame = _three_axes(frame)
        try:
            out = self._send(FrameRequest(self.video_id, start=True, frame_index=0, frame=frame, mask=mask,
                                          bgr=bgr, return_prob=return_prob, return_state=self.client.exact_failover))
        except BaseException:  # the server closes a video whose start failed
            self._drop_region()
            self._endpoint = None
            raise
        return self._remember(Keyframe(0, frame, out[LABELS]), mask, out, return_prob)

    def _step(self, frame: np.ndarray, mask: np.ndarray | None, return_prob: bool) -> Result:
        self._check_open()
        assert self._last is not None
        index, frame = self._last.index + 1, _three_axes(frame)
        out = self._send(FrameRequest(self.video_id, frame_index=index, frame=frame, mask=mask,
                                      return_prob=return_prob, return_state=self.client.exact_failover))
        return self._remember(Keyframe(index, frame, out[LABELS]), mask, out, return_prob)

    def remove_objects(self, ids: Iterable[int]) -> None:
        """Take objects out of the video on its server (InputError there, removing nothing, for an id not alive;
        the client raises it as ServeError with the server's reason)."""
        self._check_open()
        gone = np.array([int(i) for i in ids], np.int64)
        if ((gone < 1) | (gone > 255)).any():
            raise InputError(f"remove_objects: ids must be object ids 1..255, got {gone.tolist()}")
        out = self._send(FrameRequest(self.video_id, remove=gone.astype(np.uint8),
                                      return_state=self.client.exact_failover))
        self._ids, self._state = out[OBJECT_IDS], out.get(STATE)
        self._references = {i: k for i, k in self._references.items() if i in self._ids}

    def _check_open(self) -> None:
        if self._ids is None:
            raise InputError(f"video {self.video_id!r} is not started; call start(first_frame, first_mask) first")
        if self._endpoint is None:
            raise InputError(f"video {self.video_id!r} is closed; start it again (start(frame, mask))")

    def _remember(self, keyframe: Keyframe, mask: np.ndarray | None, out: dict[str, np.ndarray],
                  return_prob: bool) -> Result:
        """Keep ``keyframe`` (a copy of its frame: the caller may reuse the array) as the last frame, and as the
        reference of the objects ``mask`` states; returns the request's result."""
        keyframe = Keyframe(keyframe.index, keyframe.frame.copy(), keyframe.labels)
        self._ids, self._last, self._state = out[OBJECT_IDS], keyframe, out.get(STATE)
        stated = [] if mask is None else processing.object_ids(mask).tolist()
        self._references = {i: keyframe if i in stated else self._references[i] for i in self._ids.tolist()}
        return (out[LABELS], out[PROB]) if return_prob else out[LABELS]

    def _send(self, request: FrameRequest) -> dict[str, np.ndarray]:
        """Send ``request`` to the video's server; when that server is unreachable or no longer holds the video,
        move to (or stay on) a live server, re-prime the video there and send it again."""
        assert self._endpoint is not None
        resume = False
        for _ in range(2 * len(self.client.endpoints) + 1):
            try:
                if resume:
                    self._resume()
                return self.client.infer(request, self._endpoint, self._shared(request))
            except ServerUnreachable as exc:
                self.client.mark_down(self._endpoint)
                self._drop_region()
                self._endpoint = self.client.place(self.video_id, avoid=self._endpoint)
                log.warning("video %r: %s; moving it to %s", self.video_id, exc, self._endpoint.url)
            except VideoLost as exc:
                self._drop_region()
                log.warning("video %r: %s; re-priming it there", self.video_id, exc)
            resume = not request.start  # a start is just sent again
        raise ServeError(f"video {self.video_id!r}: its servers kept failing ({self.client.url}); see the log")

    def _resume(self) -> None:
        """Rebuild the video on its server from the reference keyframes and the last frame."""
        assert self._endpoint is not None and self._last is not None
        last, ids = self._last, sorted(self._references)
        references = [self._references[i] for i in ids]
        earlier = {id(k): k for k in references if k is not last}  # each reference keyframe once, by identity
        keyframes = [*earlier.values(), last]
        position = {id(k): j for j, k in enumerate(keyframes)}
        self.client.infer(FrameRequest(
            self.video_id, resume=True, bgr=self._bgr, keyframes=np.stack([k.frame for k in keyframes]),
            keyframe_labels=np.stack([k.labels for k in keyframes]),
            keyframe_index=np.array([k.index for k in keyframes], np.int64),
            reference_ids=np.array(ids, np.uint8),
            reference_keyframes=np.array([position[id(k)] for k in references], np.uint8),
            state=self._state), self._endpoint)
        self.moves += 1

    def _shared(self, request: FrameRequest) -> SharedRegion | None:
        """The video's shared-memory region on its server, grown to hold ``request`` (None: gRPC it is)."""
        if request.frame is None:
            return None
        assert self._endpoint is not None
        h, w = request.frame.shape[:2]
        needed = sum(a.nbytes for a in request.tensors().values()) + h * w  # the inputs, then the labels
        if self._region is not None and self._region.nbytes < needed:
            self._drop_region()
        if self._region is None:
            self._region = self._endpoint.region(max(needed, request.frame.nbytes + 2 * h * w + 256))
        return self._region

    def _drop_region(self) -> None:
        """Free the video's region (its server may have lost it: it is not given back)."""
        if self._region is not None:
            self._region.close()
            self._region = None


def _three_axes(frame: np.ndarray) -> np.ndarray:
    """A grayscale (H, W) frame as (H, W, 1): the protocol's frames have three axes."""
    return frame[:, :, None] if frame.ndim == 2 else frame
