"""API bad inputs: each prints what happens."""

import numpy as np

from simvos_trt.runtime import VideoSegmenter

frame = np.zeros((64, 96, 3), np.uint8)
mask = np.zeros((64, 96), np.uint8)
mask[5:20, 5:20] = 1


def t(name, fn):
    try:
        r = fn()
        print(f"{name} | ok | {type(r).__name__} {getattr(r, 'shape', '')}")
    except Exception as e:  # noqa: BLE001
        print(f"{name} | {type(e).__name__} | {str(e)[:200]}")


seg = VideoSegmenter.open("t", "onnxruntime")
t("api: float32 frame in 0..1", lambda: seg.start(frame.astype(np.float32), mask))
t("api: (3, H, W) channels-first frame", lambda: seg.start(frame.transpose(2, 0, 1).copy(), mask))
t("api: int64 mask with id 300", lambda: seg.start(frame, mask.astype(np.int64) * 300))
t("api: mask (1, H, W)", lambda: seg.start(frame, mask[None]))
v = seg.start(frame, mask)
t("api: step with a frame of another size", lambda: v.step(np.zeros((32, 48, 3), np.uint8)))
t("api: step with a non-contiguous view", lambda: v.step(np.zeros((64, 192, 3), np.uint8)[:, ::2]))
t("api: step after close()", lambda: (seg.close(), v.step(frame))[1])
t("api: open with backend='ort'", lambda: VideoSegmenter.open("t", "ort"))
