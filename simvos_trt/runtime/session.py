"""One video's streaming state and its per-frame step.

The memory schedule of the official inference (``simvos_trt.model.propagate``): the
first frame's memory, from the one-hot first mask, is computed once; frame 1 is
decoded against it alone (``joint_decoder_1mem``), every later frame against
[first, previous] (``joint_decoder_2mem``), the previous frame's memory being encoded
from the soft-aggregated ``objects`` of that frame. That encoding is deferred to the
start of the next ``step`` (no wasted encoding after the last frame). The query is
encoded once per frame for all objects; objects are the batch axis, cut into chunks
of the export's --max-objects for the decoders (and, without token refinement, the
memory encoder); soft aggregation always sees every object.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, overload

import numpy as np

from .. import processing as P
from ..errors import InputError, check_type
from .backends import Backend, Handle
from .geometry import Placement, frame_size, place, place_mask, prob_to_frame, write_frame

if TYPE_CHECKING:
    from ..manifest import Manifest

log = logging.getLogger(__name__)

Chunk = tuple[int, int]


@dataclass
class VideoState:
    """What one video carries from frame to frame.

    Attributes:
        placement: where its frames sit in the engine input.
        ids: (K,) uint8 object ids of the first mask, increasing; object channel i
            (1-based) of every probability map is ``ids[i - 1]``.
        lut: (K+1,) uint8 channel -> id (0 for the background).
        chunks: the object ranges [a, b) run as one batch.
        bgr: frames come in BGR order.
        frame: host staging buffer, allocated once per video: (1, He, We, 3) uint8
            (uint8 graphs) or (1, 3, He, We) normalised and zero-padded in the graph's
            float type.
        padding: (4,) int64 handle of the placement's padding (uint8 graphs), else None.
        memory_first: per chunk, (B, M, C) handles of the first frame's memory (float16 in FP16 exports).
        memory_prev: per chunk, the previous frame's memory (None before frame 2).
        pending: (frame, objects (K, 1, He, We) f32) handles of the last decoded frame
            whose memory is not yet encoded, or None.
        index: frames seen so far (1 after ``start``).
    """

    placement: Placement
    ids: np.ndarray
    lut: np.ndarray
    chunks: tuple[Chunk, ...]
    bgr: bool
    frame: np.ndarray
    padding: Handle | None
    memory_first: list[Handle]
    memory_prev: list[Handle] | None = None
    pending: tuple[Handle, Handle] | None = None
    index: int = 0


Result = np.ndarray | tuple[np.ndarray, np.ndarray]


class VideoSession:
    """Segments one video frame by frame: ``start`` with the first frame and mask, then ``step``.

    Frames: (H, W, 3) uint8 RGB (BGR with ``bgr=True``); grayscale (H, W) or (H, W, 1)
    frames are replicated to RGB, the alpha channel of (H, W, 4) frames is dropped.
    Every frame must have the first frame's size. A session is not thread-safe; use one
    session per video (sessions of one segmenter may run in parallel threads).
    """

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._manifest: Manifest = backend.manifest
        self.state: VideoState | None = None

    @property
    def object_ids(self) -> np.ndarray:
        """(K,) uint8 ids of the video's objects (channel i of a probability map is ids[i-1])."""
        return self._started().ids

    @overload
    def start(self, frame: np.ndarray, mask: np.ndarray, *, bgr: bool = ...,
              return_prob: Literal[False] = ...) -> np.ndarray: ...

    @overload
    def start(self, frame: np.ndarray, mask: np.ndarray, *, bgr: bool = ...,
              return_prob: Literal[True]) -> tuple[np.ndarray, np.ndarray]: ...

    @overload
    def start(self, frame: np.ndarray, mask: np.ndarray, *, bgr: bool = ..., return_prob: bool) -> Result: ...

    def start(self, frame: np.ndarray, mask: np.ndarray, *, bgr: bool = False,
              return_prob: bool = False) -> Result:
        """Begin (or restart) the video with its first frame and index mask.

        Args:
            frame: the first frame, (H, W, 3) uint8.
            mask: (H, W) index mask (uint8, or any integer/bool type with values
                0..255): 0 background, objects any ids 1..255.
            return_prob: also return the probabilities.
        Returns:
            the first mask itself, (H, W) uint8 (a copy), and with ``return_prob`` the
            (K+1, H, W) float32 soft aggregation of its one-hot planes.
        Raises:
            InputError: bad frame or mask, or more objects than the export can take.
        """
        be, m = self._backend, self._manifest
        check_flags(bgr=bgr, return_prob=return_prob)
        size = frame_size(frame)
        mask = check_mask(mask, size)
        ids = P.object_ids(mask)
        chunks = plan_chunks(len(ids), be, m.config.token_refinement)
        placement = place(*size, m.height, m.width)
        if placement.resized:
            log.info("frames %dx%d are resized to %dx%d and padded to the engine's %dx%d",
                     *size, *placement.scaled, m.height, m.width)
        frame_spec = next(t for t in m.graphs["query_encoder"].inputs if t.name == "frame")
        buffer = np.zeros(frame_spec.concrete(1), frame_spec.dtype)  # uint8 RGB, or normalised float32/16
        lut = np.concatenate([[0], ids]).astype(np.uint8)
        padding = be.from_host(placement.padding_array()) if m.uint8_input else None
        state = VideoState(placement, ids, lut, chunks, bgr, buffer, padding, memory_first=[])
        stage_frame(state, frame)
        masks = place_mask(mask, ids, placement)  # (K, 1, He, We)
        frame_h = be.from_host(state.frame)
        state.memory_first = [self._memory(frame_h, state.padding, be.from_host(masks[a:b]))
                              for a, b in chunks]
        state.index = 1
        self.state = state
        if not return_prob:
            return mask.copy()
        out = be.run("aggregate", {"prob": be.from_host(masks)})
        return mask.copy(), self._prob(out)

    @overload
    def step(self, frame: np.ndarray, *, return_prob: Literal[False] = ...) -> np.ndarray: ...

    @overload
    def step(self, frame: np.ndarray, *, return_prob: Literal[True]) -> tuple[np.ndarray, np.ndarray]: ...

    @overload
    def step(self, frame: np.ndarray, *, return_prob: bool) -> Result: ...

    def step(self, frame: np.ndarray, *, return_prob: bool = False) -> Result:
        """Segment the next frame.

        Args:
            frame: (H, W, 3) uint8, the first frame's size.
        Returns:
            (H, W) uint8 labels in the first mask's ids, and with ``return_prob`` the
            (K+1, H, W) float32 probabilities (background first, channels in the
            order of ``object_ids``) at the frame's size.
        Raises:
            InputError: bad frame, a frame of another size, or ``start`` not called.
        """
        st, be = self._started(), self._backend
        check_flags(return_prob=return_prob)
        size = frame_size(frame)
        pl = st.placement
        if size != (pl.height, pl.width):
            raise InputError(f"frame {st.index}: size {size[0]}x{size[1]} differs from the video's "
                             f"{pl.height}x{pl.width}; every frame of a video must have the first frame's "
                             "size (start a new video for another size)")
        if st.pending is not None:  # the previous frame's memory, before its buffer is reused
            prev_frame, prev_objects = st.pending
            st.memory_prev = [self._memory(prev_frame, st.padding, _take(be, prev_objects, st.chunks, c))
                              for c in st.chunks]
            st.pending = None
        stage_frame(st, frame)
        frame_h = be.from_host(st.frame)
        query = be.run("query_encoder", self._frame_inputs(frame_h, st.padding))["query"]
        probs = []
        for j in range(len(st.chunks)):
            inputs = {"query": query, "memory_first": st.memory_first[j]}
            if st.memory_prev is not None:
                inputs["memory_prev"] = st.memory_prev[j]
            graph = "joint_decoder_1mem" if st.memory_prev is None else "joint_decoder_2mem"
            probs.append(be.run(graph, inputs)["prob"])
        out = be.run("aggregate", {"prob": be.concat(probs)})
        result: Result
        if return_prob or pl.resized:
            prob = self._prob(out)
            labels = st.lut[prob.argmax(0)]
            result = (labels, prob) if return_prob else labels
        else:
            result = st.lut[P.unpad(be.to_host(out["labels"])[0], pl.padding)]
        st.pending = (frame_h, out["objects"])
        st.index += 1
        return result

    # ------------------------------------------------------------------ helpers

    def _started(self) -> VideoState:
        if self.state is None:
            raise InputError("step() before start(): call start(first_frame, first_mask) first")
        return self.state

    def _frame_inputs(self, frame: Handle, padding: Handle | None) -> dict[str, Handle]:
        return {"frame": frame} if padding is None else {"frame": frame, "padding": padding}

    def _memory(self, frame: Handle, padding: Handle | None, masks: Handle) -> Handle:
        inputs = {**self._frame_inputs(frame, padding), "masks": masks}
        return self._backend.run("memory_encoder", inputs)["memory"]

    def _prob(self, out: dict[str, Handle]) -> np.ndarray:
        """(K+1, H, W) float32 at the frame's size from the aggregate outputs."""
        be = self._backend
        prob = np.concatenate([be.to_host(out["background"]), be.to_host(out["objects"])])[:, 0]
        return prob_to_frame(prob, self._started().placement)


def stage_frame(state: VideoState, frame: np.ndarray) -> None:
    """Write a checked frame into the state's staging buffer (normalised for float32 graphs)."""
    if state.frame.dtype == np.uint8:
        write_frame(state.frame[0], frame, state.placement, state.bgr)
        return
    pl = state.placement
    rgb = np.zeros((*pl.scaled, 3), np.uint8)
    write_frame(rgb, frame, Placement(pl.height, pl.width, pl.scaled, P.Padding(0, 0, 0, 0)), state.bgr)
    p, (h, w) = pl.padding, pl.scaled
    state.frame[0, :, p.top : p.top + h, p.left : p.left + w] = P.normalize(rgb)


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
    aggregate = backend.object_limit("aggregate")
    if objects > aggregate:
        raise InputError(f"the video has {objects} objects; the aggregate graph takes at most {aggregate} "
                         "(soft aggregation needs all objects at once): re-export with --max-objects "
                         f"{objects}")
    decoder = min(backend.object_limit(g) for g in ("joint_decoder_1mem", "joint_decoder_2mem"))
    encoder = backend.object_limit("memory_encoder")
    if token_refinement and objects > encoder:
        raise InputError(
            f"the video has {objects} objects but this export's memory encoder takes at most {encoder}; with "
            "token refinement every object's memory depends on all objects' masks, so they cannot be split "
            f"into chunks: re-export with --max-objects {objects} (or more)")
    limit = min(decoder, encoder)
    return tuple((a, min(a + limit, objects)) for a in range(0, objects, limit))


def _take(backend: Backend, handle: Handle, chunks: tuple[Chunk, ...], chunk: Chunk) -> Handle:
    return handle if len(chunks) == 1 else backend.take(handle, *chunk)
