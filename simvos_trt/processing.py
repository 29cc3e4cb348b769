"""Pre- and post-processing of the official SimVOS inference, shared by the reference and the runtime
(pure numpy): ImageNet normalisation, even zero-padding to a multiple of 16, cropping it off."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
PATCH = 16


@dataclass(frozen=True)
class Padding:
    """Pixels added on each side of a frame; ``padded_size`` is the result's (H, W)."""

    left: int
    right: int
    top: int
    bottom: int

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        return height + self.top + self.bottom, width + self.left + self.right


def padding_for(height: int, width: int, multiple: int = PATCH) -> Padding:
    """The official even padding of an (height, width) frame to a multiple of ``multiple``.

    >>> padding_for(117, 203)
    Padding(left=2, right=3, top=5, bottom=6)
    """
    if height < 1 or width < 1:
        raise InputError(f"frame size must be positive, got {height}x{width}")
    ph, pw = (-height) % multiple, (-width) % multiple
    return Padding(left=pw // 2, right=pw - pw // 2, top=ph // 2, bottom=ph - ph // 2)


def normalize(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32: x / 255, then (x - mean) / std, as torchvision."""
    x = frame.astype(np.float32) / np.float32(255.0)  # (H, W, 3)
    x = (x - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))  # (3, H, W)


def pad(x: np.ndarray, padding: Padding) -> np.ndarray:
    """Zero-pad the last two axes of ``x`` (..., H, W) by ``padding``."""
    return np.pad(x, [(0, 0)] * (x.ndim - 2) + [(padding.top, padding.bottom), (padding.left, padding.right)])


def unpad(x: np.ndarray, padding: Padding) -> np.ndarray:
    """Crop ``padding`` off the last two axes of ``x`` (..., H, W)."""
    h, w = x.shape[-2:]
    return x[..., padding.top : h - padding.bottom, padding.left : w - padding.right]


def object_ids(mask: np.ndarray) -> np.ndarray:
    """The object ids of an index mask in increasing order, background (0) excluded: channel i of
    every probability map this package returns is the i-th id."""
    ids = np.unique(mask)
    return ids[ids != 0].astype(np.uint8)


def one_hot(mask: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(H, W) index mask -> (K, H, W) float32 one-hot planes, one per id of ``ids``."""
    return (mask[None, :, :] == ids[:, None, None]).astype(np.float32)


def check_video(frames: np.ndarray, first_mask: np.ndarray) -> None:
    """Raise InputError unless frames is (T, H, W, 3) uint8 and first_mask (H, W) uint8."""
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3:
        shape = getattr(frames, "shape", type(frames).__name__)
        raise InputError(f"frames: expected a (T, H, W, 3) RGB array, got shape {shape}")
    if frames.dtype != np.uint8:
        raise InputError(f"frames: expected dtype uint8 (0..255 RGB), got {frames.dtype}")
    if frames.shape[0] < 1:
        raise InputError("frames: the video has no frame")
    if not isinstance(first_mask, np.ndarray) or first_mask.dtype != np.uint8:
        raise InputError("first_mask: expected a (H, W) uint8 index mask, got "
                         f"{getattr(first_mask, 'dtype', type(first_mask).__name__)}")
    if first_mask.shape != frames.shape[1:3]:
        raise InputError(f"first_mask: shape {first_mask.shape} differs from the frames' (H, W) = "
                         f"{frames.shape[1:3]}; give the first frame's annotation at the frame size")
    if not first_mask.any():
        raise InputError("first_mask: no object (every pixel is 0); label objects 1..255")
