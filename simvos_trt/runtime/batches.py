"""How a video's objects are cut into decoder batches, and how the rows of device handles are gathered into
them (docs/runtime.md, "Objects over time")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from .backends.base import Backend, Handle

#: Where one object's memory lives: a handle with objects on axis 0, and the object's row in it.
Row = tuple[Handle, int]


class Batch(NamedTuple):
    """Objects ``start:stop`` (channel order) decoded in one run; ``fresh`` objects have their reference on the
    previous frame, so they are decoded against it alone (``joint_decoder_1mem``), as frame 1 against frame 0."""

    start: int
    stop: int
    fresh: bool


def plan_batches(fresh: Sequence[bool], limit: int) -> tuple[Batch, ...]:
    """The decoder batches of objects whose freshness is ``fresh`` (channel order): runs of equal freshness,
    each cut into pieces of at most ``limit`` objects.

    >>> plan_batches([True, False, False, False], 2)
    (Batch(start=0, stop=1, fresh=True), Batch(start=1, stop=3, fresh=False), Batch(start=3, stop=4, fresh=False))
    """
    batches = []
    start = 0
    for end in range(1, len(fresh) + 1):
        if end == len(fresh) or fresh[end] != fresh[start]:
            batches += [Batch(a, min(a + limit, end), fresh[start]) for a in range(start, end, limit)]
            start = end
    return tuple(batches)


def gather(backend: Backend, rows: Sequence[Row]) -> Handle:
    """One handle holding ``rows`` in order: a handle itself when the rows are all of it, in order (no copy),
    else runs of consecutive rows taken and concatenated on the backend."""
    first = rows[0][0]
    if all(h is first for h, _ in rows) and [r for _, r in rows] == list(range(objects(backend, first))):
        return first
    runs: list[tuple[Handle, int, int]] = []  # (handle, start, stop)
    for handle, row in rows:
        if runs and runs[-1][0] is handle and runs[-1][2] == row:
            runs[-1] = (handle, runs[-1][1], row + 1)
        else:
            runs.append((handle, row, row + 1))
    return backend.concat([backend.take(h, a, b) for h, a, b in runs])


def objects(backend: Backend, handle: Handle) -> int:
    """The length of a handle's object axis."""
    return backend.dtype_and_shape(handle)[1][0]
