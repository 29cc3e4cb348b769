"""Where a video's frames sit inside the engine's fixed (H, W) input, and the way back: padded as the
official inference pads, or resized (aspect ratio kept) and padded evenly. Rules: docs/runtime.md."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .. import processing
from ..errors import InputError
from ..processing import Padding


@dataclass(frozen=True)
class Placement:
    """A frame size's place in the engine input: the frames' ``height`` and ``width``, their ``scaled``
    (h, w) size (unchanged when not resized) and the ``padding`` around it up to the engine size."""

    height: int
    width: int
    scaled: tuple[int, int]
    padding: Padding

    @property
    def resized(self) -> bool:
        return self.scaled != (self.height, self.width)

    def padding_array(self) -> np.ndarray:
        """(4,) int64 [left, right, top, bottom]: the ``padding`` input of uint8 graphs."""
        p = self.padding
        return np.array([p.left, p.right, p.top, p.bottom], dtype=np.int64)


def place(height: int, width: int, engine_height: int, engine_width: int) -> Placement:
    """The placement of (height, width) frames in an (engine_height, engine_width) input:
    ``place(117, 203, 128, 208)`` pads only, ``place(480, 854, 240, 432).scaled == (240, 427)``."""
    official = processing.padding_for(height, width)
    if official.padded_size(height, width) == (engine_height, engine_width):
        return Placement(height, width, (height, width), official)
    scale = min(engine_height / height, engine_width / width)
    h = min(engine_height, max(1, round(height * scale)))
    w = min(engine_width, max(1, round(width * scale)))
    ph, pw = engine_height - h, engine_width - w
    return Placement(height, width, (h, w), Padding(left=pw // 2, right=pw - pw // 2, top=ph // 2, bottom=ph - ph // 2))


def frame_size(frame: np.ndarray) -> tuple[int, int]:
    """(H, W) of a frame after checking its type: uint8, (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)."""
    if not isinstance(frame, np.ndarray):
        raise InputError(f"frame: expected a numpy array (H, W, 3) uint8, got {type(frame).__name__}")
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3, 4)):
        raise InputError(f"frame: got shape {frame.shape}, expected (H, W, 3) RGB (or (H, W), (H, W, 1) "
                         "grayscale, (H, W, 4) RGBA)")
    if frame.dtype != np.uint8:
        raise InputError(f"frame: got dtype {frame.dtype}, expected uint8 (0..255); convert with "
                         "(x * 255).round().astype(np.uint8) for [0, 1] floats")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise InputError(f"frame: got an empty frame of shape {frame.shape}")
    return frame.shape[0], frame.shape[1]


def write_frame(dst: np.ndarray, frame: np.ndarray, placement: Placement, bgr: bool) -> None:
    """Write a checked frame into the engine-size uint8 RGB buffer ``dst`` (He, We, 3); the padding band
    keeps what ``dst`` held (uint8 graphs zero it after normalisation themselves). OpenCV converts the
    channels straight into the region (a strided numpy copy costs 100 times more)."""
    h, w = placement.scaled
    p = placement.padding
    region = dst[p.top : p.top + h, p.left : p.left + w]  # (h, w, 3), rows strided
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if placement.resized:
        frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR)
    if frame.ndim == 2:
        code = cv2.COLOR_GRAY2RGB
    elif frame.shape[2] == 4:
        code = cv2.COLOR_BGRA2RGB if bgr else cv2.COLOR_RGBA2RGB  # the alpha channel is dropped
    elif bgr:
        code = cv2.COLOR_BGR2RGB
    else:
        region[...] = frame
        return
    written = cv2.cvtColor(frame, code, dst=region)
    assert written is region or np.shares_memory(written, region), "OpenCV did not write into the buffer"


def place_mask(mask: np.ndarray, ids: np.ndarray, placement: Placement) -> np.ndarray:
    """(H, W) index mask -> (K, 1, He, We) float32 one-hot planes at the engine size (resized nearest)."""
    if placement.resized:
        h, w = placement.scaled
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
    return processing.pad(processing.one_hot(mask, ids), placement.padding)[:, None]  # (K, 1, He, We)

