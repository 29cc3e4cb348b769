"""One video's streaming state (``VideoState``) and its per-frame step (``VideoSession``): the memory schedule of
``model.propagate``, objects joining, corrected and removed at any frame. Design: docs/runtime.md."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .. import processing
from ..errors import InputError
from ..manifest import Graph
from .backends.base import Backend, Handle
from .batches import Batch, Row, gather, plan_batches
from .geometry import Placement, frame_size, place, place_mask, write_frame
from .postprocess import frame_outputs, frame_probabilities
from .video import Result, Video, check_flags, check_mask

log = logging.getLogger(__name__)

@dataclass
class VideoState:
    """What one video carries from frame to frame (handles are the backend's; He, We: the engine size; K: the
    objects alive). Memory is bounded by the objects alive: a reference and a previous-frame memory each."""

    placement: Placement  # where its frames sit in the engine input
    bgr: bool  # whether its frames come in BGR order
    staging: np.ndarray  # host buffer of the frame being segmented: (1, He, We, 3) uint8, or (1, 3, He, We) normalised
    padding: Handle | None  # (4,) int64 handle of the placement's padding (uint8 graphs), else None
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))  # (K,) uint8 alive ids, increasing
    references: list[Row] = field(default_factory=list)  # per object, where its (M, C) reference memory is
    reference_index: list[int] = field(default_factory=list)  # per object, the frame its reference comes from
    removed: set[int] = field(default_factory=set)  # ids removed from the video (they cannot come back)
    plan: tuple[Batch, ...] = ()  # the decoder batches of the last frame; () after the objects changed
    batches: list[Handle] = field(default_factory=list)  # per batch of ``plan``, its (B, M, C) reference memory
    pending: tuple[Handle, Handle] | None = None  # the last frame and its (K, 1, He, We) f32 objects, not yet encoded
    index: int = 0  # frames seen so far

    @property
    def lut(self) -> np.ndarray:
        """(K+1,) uint8 channel -> id (0 for the background)."""
        return np.concatenate([[0], self.ids]).astype(np.uint8)


@dataclass(frozen=True)
class Keyframe:
    """A frame of a video as the client saw it, for ``VideoSession.resume``: its ``index`` in the video, the
    ``frame`` (H, W, 3) uint8 and the (H, W) uint8 ``labels`` returned for it (frame 0: its mask)."""

    index: int
    frame: np.ndarray
    labels: np.ndarray


class VideoSession(Video):
    """One video on a backend; not thread-safe (sessions of one segmenter may run in parallel threads)."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.state: VideoState | None = None

    @property
    def object_ids(self) -> np.ndarray:
        return self._started().ids.copy()

    def _start(self, frame: np.ndarray, mask: np.ndarray, bgr: bool, return_prob: bool) -> Result:
        state = self._new_state(frame_size(frame), bgr)
        self._check_stated(state, mask)
        result = self._segment(state, frame, mask, return_prob)
        self.state = state
        return result

    def _step(self, frame: np.ndarray, mask: np.ndarray | None, return_prob: bool) -> Result:
        st = self._started()
        size, pl = frame_size(frame), st.placement
        if size != (pl.height, pl.width):
            raise InputError(f"frame {st.index}: size {size[0]}x{size[1]} differs from the video's "
                             f"{pl.height}x{pl.width}; every frame of a video must have the first frame's "
                             "size (start a new video for another size)")
        if mask is not None:
            self._check_stated(st, mask)
        return self._segment(st, frame, mask, return_prob)

    def remove_objects(self, ids: Iterable[int]) -> None:
        st, be = self._started(), self._backend
        gone = sorted({int(i) for i in ids})
        unknown = [i for i in gone if i not in st.ids]
        if unknown:
            removed = f" ({sorted(st.removed)} were removed before)" if st.removed else ""
            raise InputError(f"remove_objects: ids {unknown} are not objects of the video; its objects are "
                             f"{st.ids.tolist()}{removed}")
        keep = [r for r, i in enumerate(st.ids) if i not in gone]
        st.ids = st.ids[keep]
        st.references = [st.references[r] for r in keep]
        st.reference_index = [st.reference_index[r] for r in keep]
        st.removed.update(gone)
        st.plan = ()
        if st.pending is not None:
            frame, objects = st.pending
            st.pending = (frame, gather(be, [(objects, r) for r in keep])) if keep else None

    def resume(self, references: Sequence[tuple[Keyframe, Sequence[int]]], last: Keyframe, *,
               objects: np.ndarray | None = None, bgr: bool = False) -> None:
        """Rebuild the video after frame ``last.index`` from what a client kept: each object's reference
        keyframe (``references``: (keyframe, ids) pairs) and the last frame. References are encoded as the live
        session encodes them (exact). The previous frame's memory comes from ``objects``, the (K, 1, He, We)
        float32 soft objects the lost session held (``last_objects()``; exact), or else from the one-hot of
        ``last.labels`` (close, not equal). InputError for inconsistent input."""
        check_flags(bgr=bgr)
        size = frame_size(last.frame)
        state = self._new_state(size, bgr)
        given = [int(i) for _, ids in references for i in ids]
        if not given or len(set(given)) != len(given):
            raise InputError("resume: give each object's reference keyframe once (at least one object)")
        for keyframe in [*(k for k, _ in references), last]:
            frame_size(keyframe.frame)
            check_mask(keyframe.labels, size)
            if not 0 <= keyframe.index <= last.index:
                raise InputError(f"resume: keyframe {keyframe.index} is not a frame up to the last ({last.index})")
        state.ids = np.array(sorted(given), dtype=np.uint8)
        self._check_stated(state, state.ids[None])  # the ids as a one-row mask
        state.references = [(None, 0)] * len(state.ids)
        state.reference_index = [0] * len(state.ids)
        for keyframe, ids in references:
            missing = [i for i in ids if i not in keyframe.labels]
            if missing:
                raise InputError(f"resume: ids {missing} have no pixel in the labels of their keyframe "
                                 f"{keyframe.index}")
            stage_frame(state, keyframe.frame)
            self._reference(state, self._backend.from_host(state.staging), keyframe.labels,
                            np.array(sorted(ids), dtype=np.uint8), keyframe.index)
        stage_frame(state, last.frame)
        if objects is None:
            objects = place_mask(last.labels, state.ids, state.placement)  # (K, 1, He, We)
        elif objects.shape != (len(state.ids), 1, *self._engine_size) or objects.dtype != np.float32:
            raise InputError(f"resume: objects {objects.dtype} {objects.shape}, expected float32 "
                             f"({len(state.ids)}, 1, He, We) at the engine size, from last_objects()")
        state.pending = (self._backend.from_host(state.staging), self._backend.from_host(objects))
        state.index = last.index + 1
        self.state = state

    def last_objects(self) -> np.ndarray:
        """(K, 1, He, We) float32 soft objects of the last frame at the engine size: with the reference
        keyframes, what ``resume`` needs to continue the video exactly (4 bytes per engine pixel and object)."""
        st = self._started()
        if st.pending is None:
            return np.zeros((0, 1, *self._engine_size), np.float32)
        return np.array(self._backend.to_host(st.pending[1]), dtype=np.float32)

    @property
    def _engine_size(self) -> tuple[int, int]:
        return self._backend.manifest.height, self._backend.manifest.width

    def _new_state(self, size: tuple[int, int], bgr: bool) -> VideoState:
        m = self._backend.manifest
        placement = place(*size, m.height, m.width)
        if placement.resized:
            log.info("frames %dx%d are resized to %dx%d and padded to the engine's %dx%d",
                     *size, *placement.scaled, m.height, m.width)
        frame_spec = next(t for t in m.graphs[Graph.QUERY_ENCODER].inputs if t.name == "frame")
        staging = np.zeros(frame_spec.concrete(1), frame_spec.dtype)  # uint8 RGB, or normalised float32/16
        padding = self._backend.from_host(placement.padding_array()) if m.uint8_input else None
        return VideoState(placement, bgr, staging, padding)

    def _check_stated(self, st: VideoState, mask: np.ndarray) -> None:
        """InputError unless the objects of ``mask`` may be stated now: none removed, not too many alive."""
        stated = processing.object_ids(mask)
        back = sorted(set(stated.tolist()) & st.removed)
        if back:
            raise InputError(f"mask: ids {back} were removed from the video; a removed object cannot come back "
                             "(give it a new id)")
        alive = len(np.union1d(st.ids, stated))
        limit = object_limit(self._backend, self._backend.manifest.config.token_refinement)
        if alive > limit:
            new = np.setdiff1d(stated, st.ids).tolist()
            raise InputError(f"frame {st.index}: the mask's new ids {new} would make {alive} objects; {limit.reason}"
                             f" takes at most {limit}: re-export with --max-objects {alive} (the video keeps its "
                             f"{len(st.ids)} objects)")

    def _segment(self, st: VideoState, frame: np.ndarray, mask: np.ndarray | None, return_prob: bool) -> Result:
        """One frame: propagate the alive objects, apply the mask's statements, aggregate, remember."""
        be = self._backend
        previous = self._previous_memory(st)  # before the staging buffer (the previous frame) is reused
        stage_frame(st, frame)
        frame_h = be.from_host(st.staging)
        prob = self._decode(st, frame_h, previous) if len(st.ids) else None  # (K, 1, He, We)
        stated = np.zeros(0, np.uint8)  # the ids the mask states
        if mask is not None:
            stated = processing.object_ids(mask)
            prob = self._compose(st, prob, mask, stated)
        if prob is None:  # no object alive
            st.pending = None
            st.index += 1
            pl = st.placement
            labels = np.zeros((pl.height, pl.width), np.uint8)
            return (labels, np.ones((1, pl.height, pl.width), np.float32)) if return_prob else labels
        out = be.run(Graph.AGGREGATE, {"prob": prob})
        if mask is None:
            labels, probs = frame_outputs(be, out, st.placement, st.lut, return_prob)
        elif len(stated) == len(st.ids):  # every alive object stated: the mask is the frame's labels
            labels = mask.copy()
            probs = frame_probabilities(be, out, st.placement) if return_prob else None
        else:  # where the mask is 0, the most probable of the background and the objects it leaves propagating
            probs = frame_probabilities(be, out, st.placement)
            labels = stated_labels(mask, probs, st.lut, stated)
        if mask is not None:
            self._reference(st, frame_h, labels, stated, st.index)
        st.pending = (frame_h, out["objects"])
        st.index += 1
        if return_prob:
            assert probs is not None
            return labels, probs
        return labels

    def _previous_memory(self, st: VideoState) -> list[Handle | None]:
        """Per decoder batch of this frame, the (B, M, C) memory of the previous frame (None for fresh batches),
        encoded from its soft-aggregated objects; with token refinement from all objects at once."""
        be = self._backend
        fresh = [index == st.index - 1 for index in st.reference_index]
        plan = plan_batches(fresh, decoder_limit(be))
        if plan != st.plan:  # the objects or their freshness changed: regroup the references (copies)
            st.batches = [gather(be, st.references[b.start : b.stop]) for b in plan]
            st.references = [(batch, row) for batch, b in zip(st.batches, plan, strict=True)
                             for row in range(b.stop - b.start)]
            st.plan = plan
        if st.pending is None or all(b.fresh for b in plan):
            return [None] * len(plan)
        frame, objects = st.pending
        shared = None  # with token refinement every object's memory depends on all objects' masks: one run
        if be.manifest.config.token_refinement:
            shared = self._memory(frame, st.padding, objects)
        memories: list[Handle | None] = []
        for b in plan:
            whole = (b.start, b.stop) == (0, len(st.ids))
            if b.fresh:
                memories.append(None)
            elif shared is not None:
                memories.append(shared if whole else be.take(shared, b.start, b.stop))
            else:
                masks = objects if whole else be.take(objects, b.start, b.stop)
                memories.append(self._memory(frame, st.padding, masks))
        return memories

    def _decode(self, st: VideoState, frame: Handle, previous: list[Handle | None]) -> Handle:
        """(K, 1, He, We) f32 object probabilities of the frame, before aggregation."""
        be = self._backend
        query = be.run(Graph.QUERY_ENCODER, self._frame_inputs(frame, st.padding))["query"]
        probs = []
        for batch, first, last in zip(st.plan, st.batches, previous, strict=True):
            if batch.fresh:
                probs.append(be.run(Graph.JOINT_DECODER_1MEM, {"query": query, "memory_first": first})["prob"])
            else:
                inputs = {"query": query, "memory_first": first, "memory_prev": last}
                probs.append(be.run(Graph.JOINT_DECODER_2MEM, inputs)["prob"])
        return be.concat(probs)

    def _compose(self, st: VideoState, prob: Handle | None, mask: np.ndarray, stated: np.ndarray) -> Handle:
        """The objects of a frame with a mask: the stated ones as its one-hot planes, the others propagated where
        the mask is 0; new ids join the state (their references follow in ``_reference``)."""
        be = self._backend
        joined = np.union1d(st.ids, stated).astype(np.uint8)
        planes = place_mask(mask, stated, st.placement)  # (S, 1, He, We)
        objects = np.zeros((len(joined), *planes.shape[1:]), np.float32)
        if prob is not None:
            unstated = planes.sum(0) == 0  # (1, He, We)
            objects[np.searchsorted(joined, st.ids)] = be.to_host(prob) * unstated
        objects[np.searchsorted(joined, stated)] = planes
        for i in np.setdiff1d(stated, st.ids):
            at = int(np.searchsorted(st.ids, i))
            st.ids = np.insert(st.ids, at, i)
            st.references.insert(at, (None, 0))
            st.reference_index.insert(at, st.index)
        return be.from_host(objects)

    def _reference(self, st: VideoState, frame: Handle, labels: np.ndarray, stated: np.ndarray, index: int) -> None:
        """Encode the ``stated`` objects' reference memory from a frame and its (H, W) labels, as a first frame
        with its annotation: the one-hot of the labels (with token refinement every labelled object's plane)."""
        be = self._backend
        present = processing.object_ids(labels)
        encoded = present if be.manifest.config.token_refinement else stated
        planes = place_mask(labels, encoded, st.placement)  # (P, 1, He, We)
        limit = be.object_limit(Graph.MEMORY_ENCODER)
        rows: list[Row] = []
        for a in range(0, len(encoded), limit):
            memory = self._memory(frame, st.padding, be.from_host(planes[a : a + limit]))
            rows += [(memory, r) for r in range(len(encoded[a : a + limit]))]
        for i in stated:
            at = int(np.searchsorted(st.ids, i))
            st.references[at] = rows[int(np.searchsorted(encoded, i))]
            st.reference_index[at] = index
        st.plan = ()

    def _started(self) -> VideoState:
        if self.state is None:
            raise InputError("the video is not started: call start(first_frame, first_mask) first")
        return self.state

    def _frame_inputs(self, frame: Handle, padding: Handle | None) -> dict[str, Handle]:
        return {"frame": frame} if padding is None else {"frame": frame, "padding": padding}

    def _memory(self, frame: Handle, padding: Handle | None, masks: Handle) -> Handle:
        inputs = {**self._frame_inputs(frame, padding), "masks": masks}
        return self._backend.run(Graph.MEMORY_ENCODER, inputs)["memory"]


def stated_labels(mask: np.ndarray, prob: np.ndarray, lut: np.ndarray, stated: np.ndarray) -> np.ndarray:
    """The labels of a frame with a mask: the mask where it states an object, elsewhere the most probable of the
    background and the objects it does not state (``prob`` (K+1, H, W); ``lut``: ``VideoState.lut``)."""
    others = prob.copy()
    others[np.searchsorted(lut, stated)] = 0  # the stated ids' channels (lut is increasing)
    return np.where(mask != 0, mask, lut[others.argmax(0)])


def stage_frame(state: VideoState, frame: np.ndarray) -> None:
    """Write a checked frame into the state's staging buffer (normalised for float32 graphs)."""
    if state.staging.dtype == np.uint8:
        write_frame(state.staging[0], frame, state.placement, state.bgr)
        return
    pl = state.placement
    rgb = np.zeros((*pl.scaled, 3), np.uint8)
    write_frame(rgb, frame, Placement(pl.height, pl.width, pl.scaled, processing.Padding(0, 0, 0, 0)), state.bgr)
    p, (h, w) = pl.padding, pl.scaled
    state.staging[0, :, p.top : p.top + h, p.left : p.left + w] = processing.normalize(rgb)


class ObjectLimit(int):
    """The most objects a video may have alive at once on a backend; ``reason`` names the graph that sets it."""

    reason: str

    def __new__(cls, value: int, reason: str) -> ObjectLimit:
        limit = super().__new__(cls, value)
        limit.reason = reason
        return limit


def object_limit(backend: Backend, token_refinement: bool) -> ObjectLimit:
    """The most objects alive at once: soft aggregation needs all objects in one run and, with token refinement,
    so does the memory encoder (every object's memory depends on all objects' masks)."""
    aggregate = backend.object_limit(Graph.AGGREGATE)
    encoder = backend.object_limit(Graph.MEMORY_ENCODER)
    if token_refinement and encoder < aggregate:
        return ObjectLimit(encoder, "with token refinement this export's memory encoder (every object's memory "
                                    "depends on all objects' masks)")
    return ObjectLimit(aggregate, "the aggregate graph (soft aggregation needs all objects at once)")


def decoder_limit(backend: Backend) -> int:
    """The most objects run as one batch by the decoders (and, without token refinement, the memory encoder)."""
    graphs = (Graph.JOINT_DECODER_1MEM, Graph.JOINT_DECODER_2MEM, Graph.MEMORY_ENCODER)
    return min(backend.object_limit(g) for g in graphs)
