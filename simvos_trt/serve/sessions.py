"""The server's open videos: one runtime ``VideoSession`` each, stepped in order, closed when idle."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..runtime import VideoSegmenter, VideoSession
from ..runtime.backends.base import Closing
from .protocol import LABELS, OBJECT_IDS, PROB, FrameRequest

log = logging.getLogger(__name__)

#: How many closed video ids are remembered, to say why a later request finds none.
REMEMBERED = 4096


@dataclass
class OpenVideo:
    """One open video: its session, the lock that keeps its frames in order, its next frame index."""

    session: VideoSession
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_index: int = 0
    last_used: float = field(default_factory=time.monotonic)


class VideoStore(Closing):
    """Open videos by id, shared by every model instance's thread; a video is closed by its ``end``
    request, a failed start, or ``idle_timeout`` seconds without a request (README.md); ``close`` stops it."""

    def __init__(self, segmenter: VideoSegmenter, *, idle_timeout: float = 60.0, max_videos: int = 64) -> None:
        if idle_timeout <= 0 or max_videos < 1:
            raise InputError(f"idle_timeout must be > 0 and max_videos >= 1, got {idle_timeout}, {max_videos}")
        self.segmenter, self.idle_timeout, self.max_videos = segmenter, idle_timeout, max_videos
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
        video = self._open(req) if req.start else self._find(req.video_id)
        why = ""
        try:
            if req.frame_index >= 0 and req.frame_index != video.next_index:
                raise InputError(f"video {req.video_id!r}: got frame_index {req.frame_index}, expected "
                                 f"{video.next_index}; send a video's frames in order, each after the previous "
                                 "one's response")
            outputs = self._run(video, req)
            video.next_index += req.frame is not None
            why = "it ended" if req.end else ""
            return outputs
        except Exception:
            why = "its start failed" if req.start else ""
            raise
        finally:
            video.last_used = time.monotonic()
            if why:
                with self._lock:
                    self._forget(req.video_id, why)
            video.lock.release()

    def _run(self, video: OpenVideo, req: FrameRequest) -> dict[str, np.ndarray]:
        if req.frame is None:
            return {}
        if req.start:
            assert req.mask is not None
            result = video.session.start(req.frame, req.mask, bgr=req.bgr, return_prob=req.return_prob)
        else:
            result = video.session.step(req.frame, return_prob=req.return_prob)
        labels, prob = result if isinstance(result, tuple) else (result, None)
        outputs = {LABELS: labels, OBJECT_IDS: video.session.object_ids}
        return outputs if prob is None else {**outputs, PROB: prob}

    def _open(self, req: FrameRequest) -> OpenVideo:
        """A new video for ``req``, its lock held."""
        with self._lock:
            if req.video_id in self._videos:
                raise InputError(f"video {req.video_id!r} is already open; end it (end=true) before starting it "
                                 "again, or give each video its own id")
            if len(self._videos) >= self.max_videos:
                raise InputError(f"the server has {len(self._videos)} open videos, its limit (--max-videos); end "
                                 "videos with end=true, or retry when idle ones have been closed")
            video = OpenVideo(self.segmenter.video())
            video.lock.acquire()
            self._videos[req.video_id] = video
            self._closed.pop(req.video_id, None)
            return video

    def _find(self, video_id: str) -> OpenVideo:
        """The open video ``video_id``, its lock held (waits for its previous request)."""
        with self._lock:
            video = self._videos.get(video_id)
            why = self._closed.get(video_id)
        if video is None:
            state = f"was closed: {why}" if why else "was never started"
            raise InputError(f"video {video_id!r} is not open (it {state}); a video's first request carries "
                             "start=true with its first frame and mask")
        video.lock.acquire()
        with self._lock:
            current = self._videos.get(video_id)
        if current is not video:  # closed while this request waited for the previous one
            video.lock.release()
            return self._find(video_id)
        return video

    def _forget(self, video_id: str, why: str) -> None:
        """Drop an open video (the store's lock held)."""
        if self._videos.pop(video_id, None) is not None:
            self._closed[video_id] = why
            while len(self._closed) > REMEMBERED:
                self._closed.popitem(last=False)
            log.info("video %r closed: %s", video_id, why)

    def _reap_loop(self) -> None:
        """Close the videos idle for longer than ``idle_timeout`` (not one in a request), until stopped."""
        while not self._stop.wait(min(1.0, self.idle_timeout / 4)):
            now = time.monotonic()
            with self._lock:
                for video_id, video in list(self._videos.items()):
                    if now - video.last_used > self.idle_timeout and video.lock.acquire(blocking=False):
                        self._forget(video_id, f"no request for {self.idle_timeout:g} s")
                        video.lock.release()
