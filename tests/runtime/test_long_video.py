"""A long video keeps a flat memory: no per-frame growth of the video's state or buffers."""

from __future__ import annotations

import time

import numpy as np
import pytest
from videos import SMALL

from simvos_trt.runtime import VideoSegmenter

psutil = pytest.importorskip("psutil")

FRAMES = 2000
SLACK = 4 * 2**20  # bytes: allocator noise, far below one engine-size tensor per frame over 1,800 frames


def rolling_frames(count: int, seed: int = 0):
    """Frames generated on the fly: a textured scene scrolling right, one pixel per frame."""
    H, W = SMALL
    base = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    for t in range(count):
        yield np.roll(base, t % W, axis=1)


def test_rss_does_not_grow_over_2000_frames(small_export):
    H, W = SMALL
    mask = np.zeros((H, W), np.uint8)
    mask[8:24, 12:30] = 9
    proc = psutil.Process()
    rss = {}
    t0 = time.perf_counter()
    with VideoSegmenter.open(small_export.folder, "onnxruntime", threads=2) as seg:
        for t, labels in enumerate(seg.segment(rolling_frames(FRAMES), mask)):
            if t in (200, FRAMES - 1):
                rss[t] = proc.memory_info().rss
                last = labels
    seconds = time.perf_counter() - t0
    assert t == FRAMES - 1 and last.shape == (H, W) and set(np.unique(last)) <= {0, 9}
    growth = rss[FRAMES - 1] - rss[200]
    print(f"{FRAMES} frames in {seconds:.1f} s; RSS {rss[200] / 2**20:.1f} MiB after frame 200, "
          f"{rss[FRAMES - 1] / 2**20:.1f} MiB after frame {FRAMES} ({growth / 2**10:+.0f} KiB)")
    assert growth < SLACK
