"""The TensorRT backend: prebuilt engines (TensorRT or TensorRT-RTX) run through cuda-python, handles
``DeviceTensor``s on one CUDA stream, one lock for thread safety. Design: docs/runtime.md."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from math import prod
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import BackendError, DeviceUnavailableError, InputError, MissingDependencyError
from ...manifest import GRAPHS, Graph, Manifest
from ...trt.cuda import Cuda, load_cudart
from ...trt.engine import DTYPES, LoadedEngine, build_from_onnx, device_here, load_engine, make_logger
from ...trt.library import select_library, trt
from ...trt.plan import plan_profile
from ...trt.records import Device, compatibility, find_entry, rebuild_command
from .base import Backend, Handle
from .resample import RESAMPLE, Resample
from .trt_memory import BufferPool, DeviceTensor, host_view
from .trt_runner import EngineRunner

log = logging.getLogger(__name__)

#: Inputs uploaded from the host, and the buffers of each allocated on open (a pending frame outlives one upload).
HOST_INPUTS = {"frame": 2, "padding": 1, "masks": 1}
_H2D, _D2H, _D2D = "cudaMemcpyHostToDevice", "cudaMemcpyDeviceToHost", "cudaMemcpyDeviceToDevice"


def engine_library(manifest: Manifest) -> str:
    """The library the folder's engines were built with (``auto`` when none is recorded)."""
    entries = [find_entry(manifest, g) for g in GRAPHS if g in manifest.graphs]
    libraries = {e.target.library for e in entries if e is not None}
    return libraries.pop() if len(libraries) == 1 else "auto"


def require_runtime(device: int = 0, library: str = "auto") -> Device:
    """The TensorRT library and the GPU here; raises naming what to install otherwise."""
    try:
        select_library(library)
        load_cudart("the TensorRT backend")
        return device_here(device)
    except MissingDependencyError as exc:
        raise MissingDependencyError(f"the TensorRT backend needs TensorRT or TensorRT-RTX, cuda-python and an "
                                     f"NVIDIA GPU: {exc}") from exc
    except BackendError as exc:  # a GPU that cannot even be queried is no usable GPU
        raise DeviceUnavailableError(f"the TensorRT backend needs an NVIDIA GPU: {exc}") from exc


def engine_problem(folder: str | Path, manifest: Manifest, device: Device) -> str | None:
    """Why the recorded engines of ``folder`` cannot run on ``device`` (None if they can)."""
    for graph in GRAPHS:
        entry = find_entry(manifest, graph)
        if entry is None:
            return f"{folder} has no engine for {graph}; build them with: {rebuild_command(folder, force=False)}"
        reason = compatibility(entry, device)
        if reason is not None:
            return f"the {graph} engine cannot run here: {reason}; rebuild with: {rebuild_command(folder)}"
    return None


class TensorRTBackend(Backend):
    """The export folder's TensorRT engines (``simvos-build``) on CUDA ``device``: executions replayed as CUDA
    graphs with ``cuda_graphs``, at most ``max_buffers`` device buffers per engine output (docs/runtime.md),
    only the engines ``graphs`` if given (verification of a partial build). ``gpu``: the library and GPU here
    as ``require_runtime`` found them (``create_backend`` passes them on; None: found when it opens)."""

    name = "tensorrt"

    def __init__(self, folder: str | Path, manifest: Manifest, *, device: int = 0, cuda_graphs: bool = False,
                 max_buffers: int = 64, graphs: Sequence[str] | None = None, gpu: Device | None = None) -> None:
        super().__init__(folder, manifest)
        unknown = sorted(set(graphs or ()) - set(GRAPHS))
        if unknown:
            raise BackendError(f"graphs: {unknown} are not graphs of an export; expected some of {GRAPHS}")
        self.engines = tuple(g for g in GRAPHS if graphs is None or g in graphs)
        self.device, self.cuda_graphs, self.max_buffers, self.gpu = device, cuda_graphs, max_buffers, gpu
        self._lock = threading.RLock()
        self._runners: dict[str, EngineRunner] = {}
        self._resamplers: dict[Resample, EngineRunner] = {}  # one engine per resized video size
        self._cuda: Cuda | None = None
        self._stream: Any = None
        self._uploads: BufferPool | None = None
        self._scratch: BufferPool | None = None
        self._pinned = (0, 0)  # (pointer, bytes) of the pinned download buffer

    def _open(self) -> None:
        if self.gpu is None:
            self.gpu = require_runtime(self.device, engine_library(self.manifest))
        cuda = self._cuda = Cuda(load_cudart("the TensorRT backend"))
        try:
            cuda.call("cudaSetDevice", self.device)
            self._stream = cuda.call("cudaStreamCreateWithFlags", cuda.rt.cudaStreamNonBlocking)
            fix = rebuild_command(self.folder)
            for graph in self.engines:
                loaded = load_engine(self.folder, self.manifest, graph, self.gpu)
                self._runners[graph] = EngineRunner(graph, loaded, self.manifest.graphs[graph], cuda, self._stream,
                                                    fix=fix, max_buffers=self.max_buffers,
                                                    cuda_graphs=self.cuda_graphs)
            self._uploads = BufferPool(cuda, "upload", None, self.max_buffers, pinned=True)
            self._scratch = BufferPool(cuda, "scratch", None, self.max_buffers)
            for name, size in self.upload_plan().items():
                for _ in range(HOST_INPUTS[name]):
                    self._uploads.allocate(size)
            largest = max(p.size or 0 for r in self._runners.values() for p in r.pools.values())
            self._pinned = (int(cuda.call("cudaMallocHost", largest)), largest)
        except BaseException:
            self._close()
            raise
        log.info("tensorrt: %s engines of %s on device %d, %.1f MiB of buffers", self.manifest.precision,
                 self.folder, self.device, sum(self.buffer_plan().values()) / 2**20)

    def _close(self) -> None:
        """Free everything (failures are logged, so one failed call leaves nothing else allocated)."""
        cuda = self._cuda
        if cuda is None:
            return
        if self._stream is not None:
            cuda.quietly("cudaStreamSynchronize", self._stream)
        for runner in (*self._runners.values(), *self._resamplers.values()):
            runner.close()
        for pool in (self._uploads, self._scratch):
            if pool is not None:
                pool.free()
        if self._pinned[0]:
            cuda.quietly("cudaFreeHost", self._pinned[0])
        if self._stream is not None:
            cuda.quietly("cudaStreamDestroy", self._stream)
        self._runners.clear()
        self._resamplers.clear()
        self._uploads = self._scratch = self._stream = self._cuda = None
        self._pinned = (0, 0)

    def upload_plan(self) -> dict[str, int]:
        """Bytes of the upload buffer of each host-fed input (``HOST_INPUTS``) at the largest profile."""
        plan: dict[str, int] = {}
        for graph, runner in self._runners.items():
            for spec in self.manifest.graphs[graph].inputs:
                if spec.name in HOST_INPUTS:
                    size = prod(spec.concrete(runner.limit or 1)) * np.dtype(spec.dtype).itemsize
                    plan[spec.name] = max(plan.get(spec.name, 0), size)
        return plan

    def buffer_plan(self) -> dict[str, int]:
        """Label -> bytes of every device buffer held now (engine outputs, uploads, scratch)."""
        pools = [p for r in self._runners.values() for p in r.pools.values()]
        pools += [p for p in (self._uploads, self._scratch) if p is not None]
        return {b.label: b.nbytes for p in pools for b in p.buffers}

    def synchronize(self) -> None:
        """Wait for every queued copy and execution (call before reading a clock)."""
        with self._lock:
            self._need_open().call("cudaStreamSynchronize", self._stream)

    def object_limit(self, graph: str) -> int:
        """The largest object batch of the engine's optimisation profile (the export's --max-objects)."""
        runner = self._runners.get(graph)
        return runner.limit if runner is not None and runner.limit else self.manifest.max_objects

    def _need_open(self) -> Cuda:
        if self._cuda is None:
            raise BackendError("the tensorrt backend is closed; use it as a context manager (with ...:)")
        return self._cuda

    def _run(self, graph: str, inputs: Mapping[str, Handle]) -> dict[str, Handle]:
        if graph not in self._runners:
            raise BackendError(f"the tensorrt backend was opened with the engines {list(self.engines)} only")
        with self._lock:
            tensors = {k: v if isinstance(v, DeviceTensor) else self.from_host(v) for k, v in inputs.items()}
            return dict(self._runners[graph].run(tensors))

    def _resample(self, plan: Resample, inputs: Mapping[str, Handle]) -> dict[str, Handle]:
        with self._lock:
            runner = self._resamplers.get(plan) or self._resampler(plan)
            tensors = {k: v if isinstance(v, DeviceTensor) else self.from_host(v) for k, v in inputs.items()}
            return dict(runner.run(tensors))

    def _resampler(self, plan: Resample) -> EngineRunner:
        """The resample engine of ``plan``, built for this GPU when a video of its size first comes (under a
        second for a small graph) and kept until ``close``."""
        cuda = self._need_open()
        t0 = time.perf_counter()
        limit = self.object_limit(Graph.AGGREGATE)
        data, _ = build_from_onnx(plan.onnx_model(), plan_profile(plan.entry, (1, min(2, limit), limit)))
        errors: list[str] = []
        logger = make_logger(errors)
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise BackendError(f"TensorRT could not load the {RESAMPLE} engine it built: {'; '.join(errors[-5:])}")
        runner = EngineRunner(RESAMPLE, LoadedEngine(engine, None, runtime, logger), plan.entry, cuda, self._stream,
                              fix="report this as a bug", max_buffers=self.max_buffers, cuda_graphs=self.cuda_graphs)
        self._resamplers[plan] = runner
        log.info("tensorrt: built the %s engine for %dx%d frames in %.1f s", RESAMPLE, *plan.size,
                 time.perf_counter() - t0)
        return runner

    def from_host(self, array: np.ndarray) -> Handle:
        """Upload ``array`` (copied to a pinned buffer first: the caller may reuse it at once)."""
        array = np.ascontiguousarray(array)
        if array.dtype.name not in DTYPES.values():
            raise InputError(f"from_host: dtype {array.dtype} is not a TensorRT tensor type {sorted(DTYPES.values())}")
        with self._lock:
            cuda = self._need_open()
            assert self._uploads is not None
            buffer = self._uploads.acquire(array.nbytes)
            cuda.call("cudaEventSynchronize", buffer.event)  # the previous upload from this staging buffer
            if array.nbytes:
                host_view(buffer.host, array.nbytes)[:] = array.reshape(-1).view(np.uint8)
            cuda.memcpy(buffer.ptr, buffer.host, array.nbytes, _H2D, self._stream)
            cuda.call("cudaEventRecord", buffer.event, self._stream)
            return DeviceTensor(buffer, array.shape, array.dtype)

    def to_host(self, handle: Handle) -> np.ndarray:
        """A copy of the handle's data (through the pinned buffer; synchronises the stream)."""
        if isinstance(handle, np.ndarray):
            return handle
        tensor = self._tensor(handle)
        with self._lock:
            cuda = self._need_open()
            if tensor.nbytes > self._pinned[1]:
                cuda.call("cudaFreeHost", self._pinned[0])
                self._pinned = (0, 0)
                self._pinned = (int(cuda.call("cudaMallocHost", tensor.nbytes)), tensor.nbytes)
            cuda.memcpy(self._pinned[0], tensor.ptr, tensor.nbytes, _D2H, self._stream)
            cuda.call("cudaStreamSynchronize", self._stream)
            out = np.empty(tensor.shape, tensor.dtype)
            if tensor.nbytes:
                out.reshape(-1).view(np.uint8)[:] = host_view(self._pinned[0], tensor.nbytes)
            return out

    def dtype_and_shape(self, handle: Handle) -> tuple[str, tuple[int, ...]]:
        if isinstance(handle, np.ndarray):
            return handle.dtype.name, tuple(handle.shape)
        tensor = self._tensor(handle)
        return tensor.dtype.name, tensor.shape

    def concat(self, handles: Sequence[Handle]) -> Handle:
        """Handles joined along the object axis (axis 0) by device-to-device copies."""
        tensors = [self._tensor(h) for h in handles]
        first = tensors[0]
        if len(tensors) == 1:
            return first
        if any(t.dtype != first.dtype or t.shape[1:] != first.shape[1:] for t in tensors):
            raise InputError(f"concat: the handles differ beyond the object axis: {[repr(t) for t in tensors]}")
        shape = (sum(t.shape[0] for t in tensors), *first.shape[1:])
        return self._gather([(t.ptr, t.nbytes) for t in tensors], shape, first.dtype)

    def take(self, handle: Handle, start: int, stop: int) -> Handle:
        """Objects ``start:stop`` (axis 0) of a handle, copied device to device."""
        tensor = self._tensor(handle)
        if not 0 <= start < stop <= tensor.shape[0]:
            raise InputError(f"take: objects {start}:{stop} of a handle with {tensor.shape[0]}")
        per_object = tensor.nbytes // tensor.shape[0]
        parts = [(tensor.ptr + start * per_object, (stop - start) * per_object)]
        return self._gather(parts, (stop - start, *tensor.shape[1:]), tensor.dtype)

    def _gather(self, parts: Sequence[tuple[int, int]], shape: tuple[int, ...], dtype: np.dtype) -> DeviceTensor:
        """A new handle of ``shape`` holding the device ranges ``parts`` (pointer, bytes), in order."""
        with self._lock:
            cuda = self._need_open()
            assert self._scratch is not None
            buffer = self._scratch.acquire(sum(nbytes for _, nbytes in parts))
            offset = 0
            for ptr, nbytes in parts:
                cuda.memcpy(buffer.ptr + offset, ptr, nbytes, _D2D, self._stream)
                offset += nbytes
            return DeviceTensor(buffer, shape, dtype)

    def _tensor(self, handle: Handle) -> DeviceTensor:
        if not isinstance(handle, DeviceTensor):
            raise InputError(f"the tensorrt backend takes DeviceTensor handles (from its from_host or run) or "
                             f"numpy arrays, got {type(handle).__name__}")
        if not handle.buffer.ptr:
            raise BackendError(f"{handle!r} belongs to a closed tensorrt backend")
        return handle
