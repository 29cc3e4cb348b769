"""The backend interface: run one exported graph on backend-native tensor handles (they stay in the
backend's type between stages; only ``to_host`` brings one back). Design: docs/runtime.md."""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from ...errors import BackendError, InputError
from ...manifest import GRAPHS, OBJECTS_AXIS, Graph, GraphEntry, Manifest, ManifestError
from .resample import RESAMPLE, Resample, resample_on_host

log = logging.getLogger(__name__)

#: A backend-native tensor (np.ndarray, onnxruntime.OrtValue, torch.Tensor, ...).
Handle = Any

#: Object ids are uint8 labels 1..255, so no video has more objects than this.
MAX_IDS = 255


class Closing:
    """A context manager that calls ``close()`` on exit."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Free what the object holds."""


class Backend(Closing, abc.ABC):
    """Runs the exported graphs of one export folder; ``run`` is thread-safe once the backend is open.
    Subclasses implement ``_open``, ``_close``, ``_run``, ``to_host``, ``from_host`` and ``dtype_and_shape``, and
    device backends ``_resample``."""

    #: Registry name (``onnxruntime``, ``torch``, ``tensorrt``).
    name = "base"

    def __init__(self, folder: str | Path, manifest: Manifest) -> None:
        missing = [g for g in GRAPHS if g not in manifest.graphs]
        if missing:
            raise ManifestError(f"{folder}: the manifest lists no graph {missing}; export again with simvos-export")
        self.folder = Path(folder)
        self.manifest = manifest
        self._is_open = False

    def __enter__(self) -> Backend:
        self.open()
        return self

    def open(self) -> None:
        """Load every graph (idempotent)."""
        if not self._is_open:
            self._open()
            self._is_open = True
            log.info("%s backend opened %s", self.name, self.folder)

    def close(self) -> None:
        """Free every graph (idempotent)."""
        if self._is_open:
            self._close()
            self._is_open = False

    def run(self, graph: str, inputs: Mapping[str, Handle]) -> dict[str, Handle]:
        """Run ``graph`` on ``inputs`` (name -> handle); returns output name -> handle. InputError for a missing,
        unexpected or misshapen input (objects: 1..``object_limit(graph)``), BackendError when closed."""
        entry = self.manifest.graphs.get(graph)
        if entry is None:
            raise InputError(f"unknown graph {graph!r}; expected one of {sorted(self.manifest.graphs)}")
        self._check(graph, entry, inputs, self.object_limit(graph))
        return self._run(graph, inputs)

    def resample(self, plan: Resample, inputs: Mapping[str, Handle]) -> dict[str, Handle]:
        """The aggregate's ``background`` and ``objects`` at a resized video's frame size, and its labels
        (``backends.resample``), checked as ``run`` checks; the outputs stay handles of this backend."""
        self._check(RESAMPLE, plan.entry, inputs, self.object_limit(Graph.AGGREGATE))
        return self._resample(plan, inputs)

    def _resample(self, plan: Resample, inputs: Mapping[str, Handle]) -> dict[str, Handle]:
        """Default: on the host (numpy and OpenCV); device backends run it as a graph where the maps are."""
        out = resample_on_host(plan, self.to_host(inputs["background"]), self.to_host(inputs["objects"]))
        return {name: self.from_host(array) for name, array in out.items()}

    def _check(self, graph: str, entry: GraphEntry, inputs: Mapping[str, Handle], limit: int) -> None:
        if not self._is_open:
            raise BackendError(f"the {self.name} backend is closed; use it as a context manager (with ...:)")
        check_inputs(graph, entry, {k: self.dtype_and_shape(v) for k, v in inputs.items()}, limit)

    def synchronize(self) -> None:  # noqa: B027 - a no-op default, overridden by asynchronous backends
        """Wait until queued device work is done (no-op for synchronous backends); call before reading clocks."""

    def object_limit(self, graph: str) -> int:
        """The largest object batch ``graph`` takes: the export's --max-objects (as a TensorRT profile),
        but every object of a video (up to 255) for ``aggregate`` (elementwise, cheap)."""
        return MAX_IDS if graph == Graph.AGGREGATE else self.manifest.max_objects

    def concat(self, handles: Sequence[Handle]) -> Handle:
        """Concatenate handles along the object axis (axis 0). Default: through the host."""
        if len(handles) == 1:
            return handles[0]
        return self.from_host(np.concatenate([self.to_host(h) for h in handles], axis=0))

    def take(self, handle: Handle, start: int, stop: int) -> Handle:
        """Objects ``start:stop`` (axis 0) of a handle. Default: through the host."""
        return self.from_host(np.ascontiguousarray(self.to_host(handle)[start:stop]))

    @abc.abstractmethod
    def _open(self) -> None: ...

    @abc.abstractmethod
    def _close(self) -> None: ...

    @abc.abstractmethod
    def _run(self, graph: str, inputs: Mapping[str, Handle]) -> dict[str, Handle]: ...

    @abc.abstractmethod
    def to_host(self, handle: Handle) -> np.ndarray:
        """A handle's data as a numpy array (may share memory with the handle)."""

    @abc.abstractmethod
    def from_host(self, array: np.ndarray) -> Handle:
        """A handle holding ``array``'s data (may share memory with ``array``)."""

    @abc.abstractmethod
    def dtype_and_shape(self, handle: Handle) -> tuple[str, tuple[int, ...]]:
        """(numpy dtype name, shape) of a handle, for the input checks."""


def check_inputs(graph: str, entry: GraphEntry, given: Mapping[str, tuple[str, tuple[int, ...]]],
                 limit: int) -> None:
    """Raise InputError unless ``given`` (name -> (dtype, shape)) matches ``entry.inputs``."""
    expected = [t.name for t in entry.inputs]
    if sorted(given) != sorted(expected):
        raise InputError(f"graph {graph}: got inputs {sorted(given)}, expected {expected}")
    objects: dict[str, int] = {}
    for spec in entry.inputs:
        dtype, shape = given[spec.name]
        if dtype != spec.dtype:
            raise InputError(f"graph {graph}, input {spec.name}: got dtype {dtype}, expected {spec.dtype}")
        ok = len(shape) == len(spec.shape) and all(
            d == s or (s == OBJECTS_AXIS and 1 <= d <= limit)
            for d, s in zip(shape, spec.shape, strict=False))
        if not ok:
            raise InputError(
                f"graph {graph}, input {spec.name}: got shape {tuple(shape)}, expected "
                f"{tuple(f'1..{limit}' if s == OBJECTS_AXIS else s for s in spec.shape)} "
                f"(the object axis is limited by the export's --max-objects)")
        if OBJECTS_AXIS in spec.shape:
            objects[spec.name] = shape[spec.shape.index(OBJECTS_AXIS)]
    if len(set(objects.values())) > 1:
        raise InputError(f"graph {graph}: the object axis differs between inputs {objects}")
