"""The null backend, for measurement only: every graph answers at once with zeros of its outputs' shapes, so
that a timed loop shows the runtime's host work alone (``simvos-bench --host-ceiling``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ...manifest import OBJECTS_AXIS, GraphEntry, Manifest
from .base import Backend, Handle
from .resample import Resample


class NullBackend(Backend):
    """Graphs that cost nothing: ``run`` and ``resample`` check their inputs as every backend does, then give
    zeros (the object axis taken from the inputs; read-only arrays made once per shape). Handles are numpy
    arrays, copied on ``from_host`` and ``to_host`` as a device backend copies them through staging buffers."""

    name = "null"

    def __init__(self, folder: str | Path, manifest: Manifest) -> None:
        super().__init__(folder, manifest)
        self._zeros: dict[tuple[str, tuple[int, ...]], np.ndarray] = {}

    def _open(self) -> None:
        pass

    def _close(self) -> None:
        self._zeros.clear()

    def _run(self, graph: str, inputs: Mapping[str, Handle]) -> dict[str, Handle]:
        return self._answer(self.manifest.graphs[graph], inputs)

    def _resample(self, plan: Resample, inputs: Mapping[str, Handle]) -> dict[str, Handle]:
        return self._answer(plan.entry, inputs)

    def _answer(self, entry: GraphEntry, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Zeros of ``entry``'s outputs, with as many objects as the (checked) inputs have."""
        objects = [inputs[t.name].shape[t.shape.index(OBJECTS_AXIS)] for t in entry.inputs if OBJECTS_AXIS in t.shape]
        out = {}
        for t in entry.outputs:
            key = (t.dtype, t.concrete(objects[0] if objects else 1))
            if key not in self._zeros:
                self._zeros[key] = np.zeros(key[1], t.dtype)
                self._zeros[key].flags.writeable = False
            out[t.name] = self._zeros[key]
        return out

    def to_host(self, handle: Handle) -> np.ndarray:
        return np.array(handle)

    def from_host(self, array: np.ndarray) -> Handle:
        return np.array(array)

    def dtype_and_shape(self, handle: Handle) -> tuple[str, tuple[int, ...]]:
        return handle.dtype.name, handle.shape
