"""The video interface shared by the local session and the serve client (``Video``), its input checks, and
``segment_frames``, which drives either through a whole video."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Mapping, Sized
from typing import Any, Literal, overload

import numpy as np

from ..errors import InputError, check_type
from .backends.base import Closing
from .geometry import frame_size

Result = np.ndarray | tuple[np.ndarray, np.ndarray]


class Video(Closing, abc.ABC):
    """A video segmented frame by frame: ``start`` with the first frame and mask, then ``step``, which may state
    objects on any frame (they join or are corrected there) and ``remove_objects``; frames are (H, W, 3) uint8
    RGB (conversions: docs/runtime.md), all of the first frame's size."""

    @property
    @abc.abstractmethod
    def object_ids(self) -> np.ndarray:
        """(K,) uint8 ids of the objects alive now, increasing (channel i of a probability map is ids[i-1])."""

    @overload
    def start(self, frame: np.ndarray, mask: np.ndarray, *, bgr: bool = ...,
              return_prob: Literal[False] = ...) -> np.ndarray: ...

    @overload
    def start(self, frame: np.ndarray, mask: np.ndarray, *, bgr: bool = ...,
              return_prob: Literal[True]) -> tuple[np.ndarray, np.ndarray]: ...

    @overload
    def start(self, frame: np.ndarray, mask: np.ndarray, *, bgr: bool = ..., return_prob: bool) -> Result: ...

    def start(self, frame: np.ndarray, mask: np.ndarray, *, bgr: bool = False, return_prob: bool = False) -> Result:
        """Begin (or restart) the video with its first frame and (H, W) index mask (0 background, objects any ids
        1..255). Returns a copy of the mask as (H, W) uint8, and with ``return_prob`` the (K+1, H, W) float32 soft
        aggregation of its one-hot planes. InputError: a bad frame or mask, or more objects than the export takes."""
        check_flags(bgr=bgr, return_prob=return_prob)
        return self._start(frame, check_mask(mask, frame_size(frame)), bgr, return_prob)

    @overload
    def step(self, frame: np.ndarray, mask: np.ndarray | None = ..., *,
             return_prob: Literal[False] = ...) -> np.ndarray: ...

    @overload
    def step(self, frame: np.ndarray, mask: np.ndarray | None = ..., *,
             return_prob: Literal[True]) -> tuple[np.ndarray, np.ndarray]: ...

    @overload
    def step(self, frame: np.ndarray, mask: np.ndarray | None = ..., *, return_prob: bool) -> Result: ...

    def step(self, frame: np.ndarray, mask: np.ndarray | None = None, *, return_prob: bool = False) -> Result:
        """Segment the next frame: (H, W) uint8 labels, and with ``return_prob`` the (K+1, H, W) float32
        probabilities (background first, channels in the order of ``object_ids`` after this frame).

        ``mask``, an (H, W) index mask, states objects on this frame: a new id joins here, an alive id is
        corrected (its reference becomes this frame); its 0 pixels state nothing (the other objects propagate).
        The labels are the stated objects where stated and the propagated ones elsewhere. InputError, with the
        video unchanged: a bad frame or mask, another size, a removed id, more objects than the export takes,
        or ``start`` not called."""
        check_flags(return_prob=return_prob)
        size = frame_size(frame)
        return self._step(frame, None if mask is None else check_mask(mask, size), return_prob)

    @abc.abstractmethod
    def remove_objects(self, ids: Iterable[int]) -> None:
        """Take objects out of the video (memory, batches, outputs) from the next frame on; InputError, removing
        nothing, if an id is not alive. A removed id cannot come back."""

    @abc.abstractmethod
    def _start(self, frame: np.ndarray, mask: np.ndarray, bgr: bool, return_prob: bool) -> Result:
        """``start`` with a checked mask."""

    @abc.abstractmethod
    def _step(self, frame: np.ndarray, mask: np.ndarray | None, return_prob: bool) -> Result:
        """``step`` once started, with a checked mask or None."""


def segment_frames(video: Video, frames: Iterable[np.ndarray], masks: np.ndarray | Mapping[int, np.ndarray], *,
                   bgr: bool = False, return_prob: bool = False) -> Iterator[Result]:
    """Start ``video`` (a ``VideoSession`` or a remote one) with the first frame, step it through the rest;
    ``masks`` is frame 0's index mask or a mapping frame index -> mask (frame 0 included)."""
    check_flags(return_prob=return_prob)
    annotations = {0: masks} if isinstance(masks, np.ndarray) else dict(masks)
    if 0 not in annotations:
        raise InputError("masks: frame 0 has no mask; a video starts with its first frame's objects")
    shape = getattr(frames, "shape", None)
    if shape is not None:
        mask_shape = np.shape(annotations[0])
        one_frame = len(shape) == 3 and shape[:2] == mask_shape and shape[1:] != mask_shape  # (H, W, 3) itself
        if len(shape) < 3 or one_frame:
            raise InputError(f"frames: got an array of shape {tuple(shape)}, not a video: expected (T, H, W, 3) "
                             "or (T, H, W) frames; pass a single frame as [frame]")
    if isinstance(frames, (str, bytes)) or not isinstance(frames, Iterable):
        raise InputError(f"frames: got {type(frames).__name__}, expected an iterable of (H, W, 3) uint8 frames "
                         "(a list, a generator or a (T, H, W, 3) array)")
    check_mask_frames(annotations, len(frames) if isinstance(frames, Sized) else None)
    seen = 0
    for t, frame in enumerate(frames):
        seen = t + 1
        if t == 0:
            yield video.start(frame, annotations[0], bgr=bgr, return_prob=return_prob)
        else:
            yield video.step(frame, annotations.get(t), return_prob=return_prob)
    if seen == 0:
        raise InputError("frames: the video has no frame")
    check_mask_frames(annotations, seen)


def check_mask_frames(annotations: Mapping[Any, np.ndarray], count: int | None) -> None:
    """InputError unless every mask is keyed by a frame's index: an int (not a bool) from 0, under ``count``
    when the frames are counted (None: a generator's, counted at its end)."""
    for t in annotations:
        is_index = type(t) is int and t >= 0
        if not is_index or (count is not None and t >= count):
            frames = f" (0..{count - 1})" if count else ""
            raise InputError(f"masks: {t!r} is not the index of a frame of the video{frames}")


def check_flags(**flags: object) -> None:
    """InputError unless every flag is a bool (``return_prob='yes'`` is a mistake, not True)."""
    for name, value in flags.items():
        check_type(name, value, bool, "True or False")


def check_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The first mask as (H, W) uint8 after checking it against the first frame's size."""
    if not isinstance(mask, np.ndarray) or mask.ndim != 2:
        shape = getattr(mask, "shape", type(mask).__name__)
        raise InputError(f"mask: got {shape}, expected an (H, W) index mask (0 background, objects 1..255)")
    if mask.dtype == np.bool_:
        mask = mask.astype(np.uint8)
    if not np.issubdtype(mask.dtype, np.integer):
        raise InputError(f"mask: got dtype {mask.dtype}, expected an integer index mask (uint8 ids 0..255)")
    if mask.shape != size:
        raise InputError(f"mask: shape {mask.shape} differs from the first frame's (H, W) = {size}; give the "
                         "first frame's annotation at the frame's size")
    lo, hi = int(mask.min()), int(mask.max())
    if lo < 0 or hi > 255:
        raise InputError(f"mask: ids must lie in 0..255 (uint8 labels, at most 255 objects), got {lo}..{hi}")
    if hi == 0:
        raise InputError("mask: no object (every pixel is 0); label the objects to segment with ids 1..255")
    return mask.astype(np.uint8, copy=False)
