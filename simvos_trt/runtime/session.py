"""One video's streaming state (``VideoState``) and its per-frame step (``VideoSession``), with the official
inference's memory schedule (``model.propagate``). Design: docs/runtime.md."""

from __future__ import annotations

import abc
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, overload

import numpy as np

from .. import processing
from ..errors import InputError, check_type
from ..manifest import Graph
from .backends.base import Backend, Closing, Handle
from .geometry import Placement, frame_size, place, place_mask, write_frame
from .postprocess import at_frame_size, frame_outputs, frame_prob

log = logging.getLogger(__name__)

Chunk = tuple[int, int]


@dataclass
class VideoState:
    """What one video carries from frame to frame (handles are the backend's; He, We: the engine size)."""

    placement: Placement  # where its frames sit in the engine input
    ids: np.ndarray  # (K,) uint8 object ids of the first mask, increasing: channel i (1-based) is ids[i - 1]
    lut: np.ndarray  # (K+1,) uint8 channel -> id (0 for the background)
    chunks: tuple[Chunk, ...]  # the object ranges [a, b) run as one batch
    bgr: bool  # whether its frames come in BGR order
    frame: np.ndarray  # host staging buffer: (1, He, We, 3) uint8, or (1, 3, He, We) normalised in the graph's type
    padding: Handle | None  # (4,) int64 handle of the placement's padding (uint8 graphs), else None
    memory_first: list[Handle]  # per chunk, the (B, M, C) memory of the first frame
    memory_prev: list[Handle] | None = None  # per chunk, the (B, M, C) memory of the previous frame (from frame 2)
    pending: tuple[Handle, Handle] | None = None  # the last frame and its (K, 1, He, We) f32 objects, not yet encoded
    index: int = 0  # frames seen so far (1 after ``start``)


Result = np.ndarray | tuple[np.ndarray, np.ndarray]


class Video(Closing, abc.ABC):
    """A video segmented frame by frame: ``start`` with the first frame and mask, then ``step``; frames are
    (H, W, 3) uint8 RGB (conversions: docs/runtime.md), all of the first frame's size."""

    @property
    @abc.abstractmethod
    def object_ids(self) -> np.ndarray:
        """(K,) uint8 ids of the video's objects (channel i of a probability map is ids[i-1])."""

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
    def step(self, frame: np.ndarray, *, return_prob: Literal[False] = ...) -> np.ndarray: ...

    @overload
    def step(self, frame: np.ndarray, *, return_prob: Literal[True]) -> tuple[np.ndarray, np.ndarray]: ...

    @overload
    def step(self, frame: np.ndarray, *, return_prob: bool) -> Result: ...

    def step(self, frame: np.ndarray, *, return_prob: bool = False) -> Result:
        """Segment the next frame: (H, W) uint8 labels in the first mask's ids, and with ``return_prob``
        the (K+1, H, W) float32 probabilities (background first, channels in the order of
        ``object_ids``). InputError: a bad frame, another size, or ``start`` not called."""
        self.object_ids  # noqa: B018 - raises before start
        check_flags(return_prob=return_prob)
        frame_size(frame)
        return self._step(frame, return_prob)

    @abc.abstractmethod
    def _start(self, frame: np.ndarray, mask: np.ndarray, bgr: bool, return_prob: bool) -> Result:
        """``start`` with a checked mask."""

    @abc.abstractmethod
    def _step(self, frame: np.ndarray, return_prob: bool) -> Result:
        """``step`` once started."""


class VideoSession(Video):
    """One video on a backend; not thread-safe (sessions of one segmenter may run in parallel threads)."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.state: VideoState | None = None

    @property
    def object_ids(self) -> np.ndarray:
        return self._started().ids

    def _start(self, frame: np.ndarray, mask: np.ndarray, bgr: bool, return_prob: bool) -> Result:
        be, m = self._backend, self._backend.manifest
        size = frame_size(frame)
        ids = processing.object_ids(mask)
        chunks = plan_chunks(len(ids), be, m.config.token_refinement)
        placement = place(*size, m.height, m.width)
        if placement.resized:
            log.info("frames %dx%d are resized to %dx%d and padded to the engine's %dx%d",
                     *size, *placement.scaled, m.height, m.width)
        frame_spec = next(t for t in m.graphs[Graph.QUERY_ENCODER].inputs if t.name == "frame")
        buffer = np.zeros(frame_spec.concrete(1), frame_spec.dtype)  # uint8 RGB, or normalised float32/16
        lut = np.concatenate([[0], ids]).astype(np.uint8)
        padding = be.from_host(placement.padding_array()) if m.uint8_input else None
        state = VideoState(placement, ids, lut, chunks, bgr, buffer, padding, memory_first=[])
        stage_frame(state, frame)
        masks = place_mask(mask, ids, placement)  # (K, 1, He, We)
        frame_h = be.from_host(state.frame)
        state.memory_first = [self._memory(frame_h, state.padding, be.from_host(masks[a:b])) for a, b in chunks]
        state.index = 1
        self.state = state
        if not return_prob:
            return mask.copy()
        out = be.run(Graph.AGGREGATE, {"prob": be.from_host(masks)})
        return mask.copy(), frame_prob(be, *at_frame_size(be, out, placement))

    def _step(self, frame: np.ndarray, return_prob: bool) -> Result:
        st, be = self._started(), self._backend
        size = frame_size(frame)
        pl = st.placement
        if size != (pl.height, pl.width):
            raise InputError(f"frame {st.index}: size {size[0]}x{size[1]} differs from the video's "
                             f"{pl.height}x{pl.width}; every frame of a video must have the first frame's "
                             "size (start a new video for another size)")
        if st.pending is not None:  # the previous frame's memory, before its buffer is reused
            prev_frame, prev_objects = st.pending
            one = len(st.chunks) == 1  # a single chunk takes the whole handle, uncopied
            st.memory_prev = [self._memory(prev_frame, st.padding, prev_objects if one else be.take(prev_objects, *c))
                              for c in st.chunks]
            st.pending = None
        stage_frame(st, frame)
        frame_h = be.from_host(st.frame)
        query = be.run(Graph.QUERY_ENCODER, self._frame_inputs(frame_h, st.padding))["query"]
        probs = []
        for j in range(len(st.chunks)):
            inputs = {"query": query, "memory_first": st.memory_first[j]}
            if st.memory_prev is not None:
                inputs["memory_prev"] = st.memory_prev[j]
            graph = Graph.JOINT_DECODER_1MEM if st.memory_prev is None else Graph.JOINT_DECODER_2MEM
            probs.append(be.run(graph, inputs)["prob"])
        out = be.run(Graph.AGGREGATE, {"prob": be.concat(probs)})
        labels, prob = frame_outputs(be, out, pl, st.lut, return_prob)
        result = (labels, prob) if prob is not None else labels
        st.pending = (frame_h, out["objects"])
        st.index += 1
        return result

    def _started(self) -> VideoState:
        if self.state is None:
            raise InputError("step() before start(): call start(first_frame, first_mask) first")
        return self.state

    def _frame_inputs(self, frame: Handle, padding: Handle | None) -> dict[str, Handle]:
        return {"frame": frame} if padding is None else {"frame": frame, "padding": padding}

    def _memory(self, frame: Handle, padding: Handle | None, masks: Handle) -> Handle:
        inputs = {**self._frame_inputs(frame, padding), "masks": masks}
        return self._backend.run(Graph.MEMORY_ENCODER, inputs)["memory"]


def segment_frames(video: Video, frames: Iterable[np.ndarray], first_mask: np.ndarray, *, bgr: bool = False,
                   return_prob: bool = False) -> Iterator[Result]:
    """Start ``video`` (a ``VideoSession`` or a remote one) with the first frame, step it through the rest."""
    check_flags(return_prob=return_prob)
    shape, mask_shape = getattr(frames, "shape", (0, 0, 0, 0)), np.shape(first_mask)
    if len(shape) < 3 or (len(shape) == 3 and shape[:2] == mask_shape != shape[1:]):
        raise InputError(f"frames: got an array of shape {tuple(shape)}, not a video: expected (T, H, W, 3) or "
                         "(T, H, W) frames; pass a single frame as [frame]")
    if isinstance(frames, (str, bytes)) or not isinstance(frames, Iterable):
        raise InputError(f"frames: got {type(frames).__name__}, expected an iterable of (H, W, 3) uint8 frames "
                         "(a list, a generator or a (T, H, W, 3) array)")
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise InputError("frames: the video has no frame")
    yield video.start(first, first_mask, bgr=bgr, return_prob=return_prob)
    for frame in it:
        yield video.step(frame, return_prob=return_prob)


def stage_frame(state: VideoState, frame: np.ndarray) -> None:
    """Write a checked frame into the state's staging buffer (normalised for float32 graphs)."""
    if state.frame.dtype == np.uint8:
        write_frame(state.frame[0], frame, state.placement, state.bgr)
        return
    pl = state.placement
    rgb = np.zeros((*pl.scaled, 3), np.uint8)
    write_frame(rgb, frame, Placement(pl.height, pl.width, pl.scaled, processing.Padding(0, 0, 0, 0)), state.bgr)
    p, (h, w) = pl.padding, pl.scaled
    state.frame[0, :, p.top : p.top + h, p.left : p.left + w] = processing.normalize(rgb)


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


def plan_chunks(objects: int, backend: Backend, token_refinement: bool) -> tuple[Chunk, ...]:
    """The object ranges run as one batch, or InputError when the export cannot take the objects."""
    aggregate = backend.object_limit(Graph.AGGREGATE)
    if objects > aggregate:
        raise InputError(f"the video has {objects} objects; the aggregate graph takes at most {aggregate} "
                         "(soft aggregation needs all objects at once): re-export with --max-objects "
                         f"{objects}")
    decoder = min(backend.object_limit(g) for g in (Graph.JOINT_DECODER_1MEM, Graph.JOINT_DECODER_2MEM))
    encoder = backend.object_limit(Graph.MEMORY_ENCODER)
    if token_refinement and objects > encoder:
        raise InputError(
            f"the video has {objects} objects but this export's memory encoder takes at most {encoder}; with "
            "token refinement every object's memory depends on all objects' masks, so they cannot be split "
            f"into chunks: re-export with --max-objects {objects} (or more)")
    limit = min(decoder, encoder)
    return tuple((a, min(a + limit, objects)) for a in range(0, objects, limit))

