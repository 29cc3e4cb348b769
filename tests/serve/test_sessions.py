"""The server's video store in this process: a busy video refuses at once, eviction takes the least recently used,
a resume with inconsistent tensors is refused with what was wrong."""

from __future__ import annotations

import time

import numpy as np
import pytest
from videos import moving_video

from simvos_trt.errors import InputError
from simvos_trt.runtime import VideoSegmenter
from simvos_trt.serve import FrameRequest
from simvos_trt.serve.sessions import Limits, VideoStore


@pytest.fixture(scope="module")
def segmenter(small_export):
    with VideoSegmenter.open(small_export, "onnxruntime", threads=1) as seg:
        yield seg


def _start(store: VideoStore, video_id: str, seed: int = 0) -> list[np.ndarray]:
    frames, mask = moving_video(3, 32, 48, objects=1, seed=seed)
    store.handle(FrameRequest(video_id, start=True, frame=frames[0], mask=mask))
    return frames


def test_a_request_for_a_busy_video_is_refused_at_once(segmenter):
    with VideoStore(segmenter, Limits()) as store:
        frames = _start(store, "v")
        store._videos["v"].lock.acquire()  # as a request still running
        t0 = time.monotonic()
        with pytest.raises(InputError, match="video 'v' is busy: its previous request is still running"):
            store.handle(FrameRequest("v", frame=frames[1]))
        assert time.monotonic() - t0 < 1
        store._videos["v"].lock.release()
        assert store.handle(FrameRequest("v", frame=frames[1], frame_index=1))["labels"].shape == (32, 48)


def test_a_start_at_the_limit_evicts_the_least_recently_used_idle_video(segmenter):
    with VideoStore(segmenter, Limits(max_videos=2, evict_after=0.3)) as store:
        a, b = _start(store, "a", 1), _start(store, "b", 2)
        with pytest.raises(InputError, match="the server has 2 open videos, its limit .*none idle for 0.3 s"):
            _start(store, "c")
        time.sleep(0.4)
        store.handle(FrameRequest("a", frame=a[1]))  # b is now the least recently used
        _start(store, "c")
        with pytest.raises(InputError, match=r"video 'b' is not open \(it was closed: evicted after 0 s without "
                           r"a request, the least recently used of 2 open videos \(--max-videos\)"):
            store.handle(FrameRequest("b", frame=b[1]))
        store.handle(FrameRequest("a", frame=a[2], end=True))
        assert sorted(store._videos) == ["c"]


@pytest.mark.parametrize("limits, message", [
    (dict(max_videos=0), "max_videos, max_frame_pixels and max_response_bytes must be >= 1"),
    (dict(idle_timeout=0), "idle_timeout must be > 0"),
    (dict(evict_after=-1), "evict_after >= 0"),
])
def test_limits_are_checked(limits, message):
    with pytest.raises(InputError, match=message):
        Limits(**limits)


@pytest.mark.parametrize("keyframes, labels, ids, owners, message", [
    (0, 0, [1], [0], "'keyframes' is empty; send each object's reference keyframe and the last frame"),
    (2, 1, [1], [0], "'keyframe_labels' and 'keyframe_index' have 1 and 1 entries, expected one per keyframe in "
                     r"'keyframes' \(2\)"),
    (2, 2, [1, 2], [0], r"'reference_keyframes' has 1 entries, expected one per object in 'reference_ids' \(2\)"),
    (2, 2, [1], [2], r"'reference_keyframes' names keyframe 2, expected positions in 'keyframes' \(0..1\)"),
])
def test_a_resume_with_inconsistent_tensors_is_refused(segmenter, keyframes, labels, ids, owners, message):
    frames, mask = moving_video(2, 32, 48, objects=1, seed=3)
    with VideoStore(segmenter, Limits()) as store:
        with pytest.raises(InputError, match=f"video 'v': resume: {message}"):
            store.handle(FrameRequest("v", resume=True, keyframes=np.stack(frames)[:keyframes],
                                      keyframe_labels=np.repeat(mask[None], labels, axis=0),
                                      keyframe_index=np.arange(labels),
                                      reference_ids=np.array(ids, np.uint8),
                                      reference_keyframes=np.array(owners, np.uint8)))
        assert store._videos == {}  # a video whose resume failed is not kept
