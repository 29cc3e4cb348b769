"""The backend interface: run one exported graph on backend-native tensor handles.

A backend is a context manager that loads the graphs of an export folder on enter
and frees them on exit (Polygraphy's runners are the model). Between stages, tensors
stay in the backend's own type (a *handle*: a numpy array for ONNX Runtime on the CPU,
an ``OrtValue`` on a GPU, a ``torch.Tensor`` for the torch backend, a device buffer for
TensorRT), so a GPU backend keeps per-frame data on the device; only ``to_host``
brings a tensor back. Every ``run`` checks its inputs against the manifest's tensor
specs first.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from ...errors import BackendError, InputError
from ...manifest import OBJECTS_AXIS, GraphEntry, Manifest, ManifestError

log = logging.getLogger(__name__)

#: A backend-native tensor (np.ndarray, onnxruntime.OrtValue, torch.Tensor, ...).
Handle = Any

#: The graphs every export folder holds (the contract of ``simvos_trt.model.stages``).
REQUIRED_GRAPHS = ("query_encoder", "memory_encoder", "joint_decoder_1mem", "joint_decoder_2mem", "aggregate")

#: Object ids are uint8 labels 1..255, so no video has more objects than this.
MAX_IDS = 255


class Backend(abc.ABC):
    """Runs the exported graphs of one export folder.

    Subclasses implement ``_open``, ``_close``, ``_run``, ``to_host``, ``from_host`` and
    ``describe``; ``run`` (checked) and the context-manager protocol are shared.
    ``run`` may be called from several threads at once once the backend is open.
    """

    #: Registry name (``onnxruntime``, ``torch``, ``tensorrt``).
    name = "base"

    def __init__(self, folder: str | Path, manifest: Manifest) -> None:
        missing = [g for g in REQUIRED_GRAPHS if g not in manifest.graphs]
        if missing:
            raise ManifestError(f"{folder}: the manifest lists no graph {missing}; "
                                "export again with simvos-export")
        self.folder = Path(folder)
        self.manifest = manifest
        self._is_open = False

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Backend:
        self.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

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

    @property
    def is_open(self) -> bool:
        return self._is_open

    # ------------------------------------------------------------------ running

    def run(self, graph: str, inputs: Mapping[str, Handle]) -> dict[str, Handle]:
        """Run ``graph`` on ``inputs`` (name -> handle); returns output name -> handle.

        Raises:
            InputError: an input is missing, unexpected, or has the wrong dtype or shape
                (the object axis must lie in 1..``object_limit(graph)`` and agree
                across inputs).
            BackendError: the backend is not open.
        """
        if not self._is_open:
            raise BackendError(f"the {self.name} backend is closed; use it as a context manager (with ...:)")
        entry = self.manifest.graphs.get(graph)
        if entry is None:
            raise InputError(f"unknown graph {graph!r}; expected one of {sorted(self.manifest.graphs)}")
        check_inputs(graph, entry, {k: self.describe(v) for k, v in inputs.items()}, self.object_limit(graph))
        return self._run(graph, inputs)

    def synchronize(self) -> None:  # noqa: B027 - a no-op default, overridden by asynchronous backends
        """Wait until queued device work is done (no-op for synchronous backends); call before reading clocks."""

    def object_limit(self, graph: str) -> int:
        """The largest object batch ``graph`` accepts (the engine profile's max)."""
        return self.manifest.max_objects

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
    def describe(self, handle: Handle) -> tuple[str, tuple[int, ...]]:
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
