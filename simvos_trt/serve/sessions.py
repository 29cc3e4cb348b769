"""The server's open videos: one runtime ``VideoSession`` each, stepped in order, bounded by ``Limits``, closed
when idle or evicted when least recently used (README.md, "Lifecycle" and "Limits")."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..runtime import Keyframe, VideoSegmenter, VideoSession
from ..runtime.backends.base import Closing
from .protocol import (
    FRAME,
    KEYFRAME_INDEX,
    KEYFRAME_LABELS,
    KEYFRAMES,
    LABELS,
    MASK,
    OBJECT_IDS,
    PROB,
    REFERENCE_IDS,
    REFERENCE_KEYFRAMES,
    STATE,
    FrameRequest,
    not_open,
)

log = logging.getLogger(__name__)

#: How many closed video ids are remembered, to say why a later request finds none.
REMEMBERED = 4096
#: The axis of H in each input that carries images (W follows it).
IMAGE_AXIS = {FRAME: 0, MASK: 0, KEYFRAMES: 1, KEYFRAME_LABELS: 1}


@dataclass(frozen=True)
class Limits:
    """What one server holds at most, each refused with a one-line error before anything is allocated."""

    max_videos: int = 64  # open videos; a start beyond evicts an idle one (``evict_after``) or is refused
    idle_timeout: float = 60.0  # seconds without a request after which a video is closed
    evict_after: float = 5.0  # a start at ``max_videos`` evicts the least recently used video idle this long
    max_frame_pixels: int = 7680 * 4320  # H x W of a frame (and mask); the default is 8K UHD
    max_response_bytes: int = 256 * 2**20  # labels, object ids and (return_prob) probabilities of one answer

    def __post_init__(self) -> None:
        if self.max_videos < 1 or self.max_frame_pixels < 1 or self.max_response_bytes < 1:
            raise InputError(f"max_videos, max_frame_pixels and max_response_bytes must be >= 1, got "
                             f"{self.max_videos}, {self.max_frame_pixels}, {self.max_response_bytes}")
        if self.idle_timeout <= 0 or self.evict_after < 0:
            raise InputError(f"idle_timeout must be > 0 and evict_after >= 0, got {self.idle_timeout}, "
                             f"{self.evict_after}")

    def tensorrt_buffers(self, instances: int, max_objects: int) -> int:
        """The TensorRT backend's ``max_buffers`` (per pool) that ``max_videos`` open videos of at most
        ``max_objects`` objects and ``instances`` requests at once never exhaust (README.md, "Limits")."""
        per_video, per_request = max_objects + 1, max_objects + 3
        return per_video * self.max_videos + per_request * instances


@dataclass
class OpenVideo:
    """One open video: its session, the lock held while a request runs, its next frame index."""

    session: VideoSession
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_index: int = 0
    last_used: float = field(default_factory=time.monotonic)


class VideoStore(Closing):
    """Open videos by id, shared by every model instance's thread; a video is closed by its ``end`` request, a
    failed start, ``idle_timeout`` seconds without a request, or eviction (README.md); ``close`` stops it."""

    def __init__(self, segmenter: VideoSegmenter, limits: Limits) -> None:
        self.segmenter, self.limits = segmenter, limits
        self.max_objects = segmenter.manifest.max_objects
        self.engine_pixels = segmenter.manifest.height * segmenter.manifest.width
        self._videos: dict[str, OpenVideo] = {}
        self._closed: OrderedDict[str, str] = OrderedDict()  # id -> why
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap_loop, name="simvos-idle-videos", daemon=True)
        self._reaper.start()

    def close(self) -> None:
        self._stop.set()
        self._reaper.join()
        with self._lock:
            self._videos.clear()

    def handle(self, req: FrameRequest) -> dict[str, np.ndarray]:
        """Run one request; returns its output tensors. Raises InputError for a request it refuses."""
        self._check_pixels(req)
        video = self._open(req) if req.start or req.resume else self._find(req.video_id)
        why = ""
        try:
            if req.frame_index >= 0 and req.frame_index != video.next_index:
                raise InputError(f"video {req.video_id!r}: got frame_index {req.frame_index}, expected "
                                 f"{video.next_index}; send a video's frames in order, each after the previous "
                                 "one's response")
            self._check_objects_and_response(video, req)
            outputs = self._run(video, req)
            why = "it ended" if req.end else ""
            return outputs
        except Exception:
            if req.start or req.resume:  # a video whose first request failed is not kept
                why = f"its {'start' if req.start else 'resume'} failed"
            raise
        finally:
            video.last_used = time.monotonic()
            if why:
                with self._lock:
                    self._forget(req.video_id, video, why)
            video.lock.release()

    def _run(self, video: OpenVideo, req: FrameRequest) -> dict[str, np.ndarray]:
        """Resume, or remove objects and segment the frame, as ``req`` asks; the next frame index is set after."""
        session = video.session
        outputs: dict[str, np.ndarray] = {}
        if req.resume:
            video.next_index = resume(session, req) + 1
        elif req.remove is not None:
            session.remove_objects(req.remove.tolist())  # before the frame: it stays removed if the frame fails
        if req.frame is not None:
            if req.start:
                assert req.mask is not None
                result = session.start(req.frame, req.mask, bgr=req.bgr, return_prob=req.return_prob)
            else:
                result = session.step(req.frame, req.mask, return_prob=req.return_prob)
            video.next_index += 1
            outputs[LABELS], prob = result if isinstance(result, tuple) else (result, None)
            if prob is not None:
                outputs[PROB] = prob
        if req.frame is None and req.remove is None and not req.resume:  # an end-only request
            return outputs
        if req.return_state:
            outputs[STATE] = session.last_objects()
        return {**outputs, OBJECT_IDS: session.object_ids}

    def _check_pixels(self, req: FrameRequest) -> None:
        """Refuse a frame, mask or keyframe beyond ``max_frame_pixels``."""
        limit = self.limits.max_frame_pixels
        for name, array in req.tensors().items():
            axis = IMAGE_AXIS.get(name)
            if axis is not None and array.ndim >= axis + 2:
                h, w = array.shape[axis : axis + 2]
                if h * w > limit:
                    raise InputError(f"video {req.video_id!r}: '{name}' has {h}x{w} = {h * w} pixels, more than "
                                     f"this server takes ({limit}, --max-frame-pixels); send smaller frames")

    def _check_objects_and_response(self, video: OpenVideo, req: FrameRequest) -> None:
        """Refuse more objects than the export takes, or an answer beyond ``max_response_bytes``."""
        if req.resume:
            assert req.reference_ids is not None and req.keyframes is not None
            alive = set(req.reference_ids.tolist())
            if len(req.keyframes) > len(alive) + 1:
                raise InputError(f"video {req.video_id!r}: resume: {len(req.keyframes)} keyframes for "
                                 f"{len(alive)} objects; send each object's reference keyframe once, and the last "
                                 "frame")
        elif req.frame is None and req.remove is None:
            return
        else:
            alive = set() if req.start else set(video.session.object_ids.tolist())
            alive -= set() if req.remove is None else set(req.remove.tolist())
            if req.mask is not None:
                alive |= set(np.flatnonzero(np.bincount(req.mask.ravel(), minlength=256)[1:]) + 1)
        if len(alive) > self.max_objects:
            raise InputError(f"video {req.video_id!r}: {len(alive)} objects, more than this export takes at once "
                             f"({self.max_objects}); serve an export made with simvos-export --max-objects "
                             f"{len(alive)} (or more)")
        h, w = (0, 0) if req.frame is None else req.frame.shape[:2]
        size = h * w + len(alive)  # the labels and the object ids
        if req.return_prob:  # float32, the background's too
            size += 4 * (len(alive) + 1) * h * w
        if req.return_state:  # float32 at the engine size
            size += 4 * len(alive) * self.engine_pixels
        if size > self.limits.max_response_bytes:
            raise InputError(f"video {req.video_id!r}: the answer would take {size} bytes, more than this server "
                             f"sends ({self.limits.max_response_bytes}, --max-response-bytes); ask without "
                             "return_prob (or return_state), or send smaller frames")

    def _open(self, req: FrameRequest) -> OpenVideo:
        """A new video for ``req``, its lock held; a resume replaces an open video of its id (its client has
        moved on from that copy, which a request still running may finish with)."""
        with self._lock:
            replaced = self._videos.get(req.video_id)
            if replaced is not None and not req.resume:
                raise InputError(f"video {req.video_id!r} is already open; end it (end=true) before starting it "
                                 "again, or give each video its own id")
            full = replaced is None and len(self._videos) >= self.limits.max_videos
            if full and not self._evict_one():  # at the limit, and no video idle long enough to evict
                raise InputError(f"the server has {len(self._videos)} open videos, its limit (--max-videos), none "
                                 f"idle for {self.limits.evict_after:g} s; end videos with end=true, or retry later")
            video = OpenVideo(self.segmenter.video())
            video.lock.acquire()
            self._videos[req.video_id] = video
            self._closed.pop(req.video_id, None)
            return video

    def _evict_one(self) -> bool:
        """Close the least recently used video idle for ``evict_after`` (the store's lock held); False if none."""
        now = time.monotonic()
        for video_id, video in sorted(self._videos.items(), key=lambda item: item[1].last_used):
            idle = now - video.last_used
            if idle < self.limits.evict_after:
                return False
            if video.lock.acquire(blocking=False):
                self._forget(video_id, video, f"evicted after {idle:.0f} s without a request, the least recently "
                             f"used of {len(self._videos)} open videos (--max-videos) when another started")
                video.lock.release()
                return True
        return False

    def _find(self, video_id: str) -> OpenVideo:
        """The open video ``video_id``, its lock held; refused at once while another request of it runs."""
        with self._lock:
            video = self._videos.get(video_id)
            if video is None:
                raise InputError(not_open(video_id, self._closed.get(video_id)))
            if not video.lock.acquire(blocking=False):
                raise InputError(f"video {video_id!r} is busy: its previous request is still running; send a "
                                 "video's next request after the previous one's response")
            return video

    def _forget(self, video_id: str, video: OpenVideo, why: str) -> None:
        """Drop the open video ``video`` (the store's lock held)."""
        if self._videos.get(video_id) is video:
            del self._videos[video_id]
            self._closed[video_id] = why
            while len(self._closed) > REMEMBERED:
                self._closed.popitem(last=False)
            log.info("video %r closed: %s", video_id, why)

    def _reap_loop(self) -> None:
        """Close the videos idle for longer than ``idle_timeout`` (not one in a request), until stopped."""
        timeout = self.limits.idle_timeout
        while not self._stop.wait(min(1.0, timeout / 4)):
            now = time.monotonic()
            with self._lock:
                for video_id, video in list(self._videos.items()):
                    if now - video.last_used > timeout and video.lock.acquire(blocking=False):
                        self._forget(video_id, video, f"no request for {timeout:g} s")
                        video.lock.release()


def resume(session: VideoSession, req: FrameRequest) -> int:
    """Rebuild ``session`` from a resume request (README.md, "Failover"); returns the index of its last frame."""
    frames, labels, index = req.keyframes, req.keyframe_labels, req.keyframe_index
    ids, owners = req.reference_ids, req.reference_keyframes
    assert frames is not None and labels is not None and index is not None and ids is not None and owners is not None
    video, n = f"video {req.video_id!r}: resume", len(frames)
    if n == 0:
        raise InputError(f"{video}: '{KEYFRAMES}' is empty; send each object's reference keyframe and the last frame")
    if len(labels) != n or len(index) != n:
        raise InputError(f"{video}: '{KEYFRAME_LABELS}' and '{KEYFRAME_INDEX}' have {len(labels)} and {len(index)} "
                         f"entries, expected one per keyframe in '{KEYFRAMES}' ({n}); send each keyframe's labels "
                         "and index")
    if len(ids) != len(owners):
        raise InputError(f"{video}: '{REFERENCE_KEYFRAMES}' has {len(owners)} entries, expected one per object in "
                         f"'{REFERENCE_IDS}' ({len(ids)}); send each object's keyframe position")
    if (owners >= n).any():
        raise InputError(f"{video}: '{REFERENCE_KEYFRAMES}' names keyframe {owners.max()}, expected positions in "
                         f"'{KEYFRAMES}' (0..{n - 1}); send each object's reference keyframe")
    keyframes = [Keyframe(int(i), f, k) for i, f, k in zip(index, frames, labels, strict=True)]
    references = [(keyframes[j], ids[owners == j].tolist()) for j in np.unique(owners)]
    session.resume(references, keyframes[-1], objects=req.state, bgr=req.bgr)
    return keyframes[-1].index
