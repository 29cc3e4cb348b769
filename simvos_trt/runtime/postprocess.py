"""A frame's results from the aggregate graph's outputs: labels in the video's ids and, when asked, the
probabilities at the frame's size. For a resized video the maps are resampled where they are
(``Backend.resample``: on the device for device backends), so only uint8 labels reach the host."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from .. import processing
from .backends.base import Backend, Handle
from .backends.resample import Resample
from .geometry import Placement

#: The probability maps of the aggregate graph, background first.
PROB = ("background", "objects")


@lru_cache(maxsize=64)
def resample_plan(engine: tuple[int, int], placement: Placement) -> Resample:
    """The ``Resample`` from the engine's maps to a resized placement's frames (one object per size)."""
    p = placement.padding
    return Resample(engine, (p.top, p.left, *placement.scaled), (placement.height, placement.width))


def frame_outputs(backend: Backend, aggregate: dict[str, Handle], placement: Placement, lut: np.ndarray,
                  return_prob: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W) uint8 labels in the ids of ``lut`` ((K+1,) uint8, channel -> id), and with ``return_prob`` the
    (K+1, H, W) float32 probabilities (background first), from the aggregate's output handles at the engine size."""
    maps, crop = at_frame_size(backend, aggregate, placement)
    labels = to_ids(processing.unpad(backend.to_host(maps["labels"])[0], crop), lut)  # (H, W)
    return labels, frame_prob(backend, maps, crop) if return_prob else None


def frame_probabilities(backend: Backend, aggregate: dict[str, Handle], placement: Placement) -> np.ndarray:
    """``frame_outputs``' probabilities alone (for a frame whose mask gives its labels)."""
    maps, crop = at_frame_size(backend, aggregate, placement)
    return frame_prob(backend, maps, crop)


def at_frame_size(backend: Backend, aggregate: dict[str, Handle],
                  placement: Placement) -> tuple[dict[str, Handle], processing.Padding]:
    """The handles of labels and probabilities (``PROB``) covering the frame, and what to crop off them."""
    if not placement.resized:
        return {"labels": aggregate["labels"], **{k: aggregate[k] for k in PROB}}, placement.padding
    plan = resample_plan((backend.manifest.height, backend.manifest.width), placement)
    out = backend.resample(plan, {k: aggregate[k] for k in PROB})
    return {"labels": out["labels"], **{k: out[f"frame_{k}"] for k in PROB}}, processing.Padding(0, 0, 0, 0)


def frame_prob(backend: Backend, maps: dict[str, Handle], crop: processing.Padding) -> np.ndarray:
    """(K+1, H, W) float32 probabilities on the host from ``at_frame_size``'s handles."""
    prob = np.concatenate([backend.to_host(maps[k]) for k in PROB])[:, 0]  # (K+1, h, w)
    return np.ascontiguousarray(processing.unpad(prob, crop))


def to_ids(channels: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """(H, W) uint8 channel indices -> the ids of ``lut`` (contiguous; OpenCV's table lookup)."""
    if np.array_equal(lut, np.arange(len(lut))):  # ids 1..K in order: the channels are the ids
        return np.ascontiguousarray(channels)
    table = np.zeros(256, np.uint8)
    table[: len(lut)] = lut
    return cv2.LUT(np.ascontiguousarray(channels), table)
