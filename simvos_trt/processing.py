"""Pre- and post-processing of the official SimVOS inference, shared by the reference and the runtime
(pure numpy): ImageNet normalisation, even zero-padding to a multiple of 16, cropping it off."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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


def check_index_mask(name: str, mask: np.ndarray, size: tuple[int, ...]) -> None:
    """Raise InputError unless ``mask`` is an (H, W) uint8 index mask of ``size`` with at least one object."""
    if not isinstance(mask, np.ndarray) or mask.dtype != np.uint8:
        raise InputError(f"{name}: expected a (H, W) uint8 index mask, got "
                         f"{getattr(mask, 'dtype', type(mask).__name__)}")
    if mask.shape != size:
        raise InputError(f"{name}: shape {mask.shape} differs from the frames' (H, W) = {size}; give the "
                         "annotation at the frame size")
    if not mask.any():
        raise InputError(f"{name}: no object (every pixel is 0); label objects 1..255")


def check_annotations(frames: np.ndarray, masks: np.ndarray | Mapping[int, np.ndarray]) -> dict[int, np.ndarray]:
    """The annotations of a video as {frame index: (H, W) uint8 index mask}, increasing, frame 0 first:
    ``masks`` is frame 0's mask or such a mapping. InputError unless ``frames`` is (T, H, W, 3) uint8, for a
    frame outside the video, or a bad mask."""
    if isinstance(masks, np.ndarray):
        masks = {0: masks}
    if not isinstance(masks, Mapping) or 0 not in masks:
        raise InputError("masks: expected frame 0's index mask, or a mapping {frame index: index mask} that "
                         "includes frame 0 (the video starts with its first annotated objects)")
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3:
        shape = getattr(frames, "shape", type(frames).__name__)
        raise InputError(f"frames: expected a (T, H, W, 3) RGB array, got shape {shape}")
    if frames.dtype != np.uint8:
        raise InputError(f"frames: expected dtype uint8 (0..255 RGB), got {frames.dtype}")
    if frames.shape[0] < 1:
        raise InputError("frames: the video has no frame")
    for t, mask in masks.items():
        if type(t) is not int or not 0 <= t < len(frames):
            raise InputError(f"masks: frame {t!r} is not a frame of the video (0..{len(frames) - 1})")
        check_index_mask(f"masks[{t}]", mask, frames.shape[1:3])
    return dict(sorted(masks.items()))


def check_removals(annotations: Mapping[int, np.ndarray], removals: Mapping[int, Iterable[int]],
                   frames: int) -> dict[int, set[int]]:
    """``removals`` {frame index: ids removed before that frame} as sets, after checking that each id is
    alive then and that no removed id is annotated again (InputError otherwise)."""
    removed = {t: {int(i) for i in ids} for t, ids in removals.items()}
    outside = sorted(t for t in removed if type(t) is not int or not 0 < t < frames)
    if outside:
        raise InputError(f"removals: frames {outside} are not frames 1..{frames - 1} of the video")
    alive: set[int] = set()
    gone: set[int] = set()
    for t in range(frames):
        unknown = sorted(removed.get(t, set()) - alive)
        if unknown:
            raise InputError(f"removals[{t}]: ids {unknown} are not alive before frame {t}; remove only objects "
                             "of the video")
        alive -= removed.get(t, set())
        gone |= removed.get(t, set())
        if t in annotations:
            stated = {int(i) for i in object_ids(annotations[t])}
            if stated & gone:
                raise InputError(f"masks[{t}]: ids {sorted(stated & gone)} were removed earlier; a removed object "
                                 "cannot come back: give it a new id")
            alive |= stated
    return removed
