"""The TensorRT backend: prebuilt engines run through cuda-python, stage outputs kept on the device.

    backend = create_backend("tensorrt", folder, read_manifest(folder), precision="fp16")
    with backend:
        frame = backend.from_host(frame_array)            # uint8 (1, H, W, 3): 1 byte per pixel
        query = backend.run("query_encoder", {"frame": frame, "padding": pad})["query"]
        backend.to_host(query)                            # (1, N, C) float32, synchronised

Polygraphy's ``TrtRunner`` is the model: engines are loaded on ``open`` (``load_engine``,
which refuses an engine built for another GPU or TensorRT with the rebuild command), one
execution context per engine, one CUDA stream for everything, inputs checked against the
engine's metadata, and ``set_input_shape`` / ``set_tensor_address`` called only when the
shape or address of a tensor changes. Every CUDA call goes through ``Cuda.call``, which
raises ``CudaError`` naming the call and the CUDA error.

Handles are ``DeviceTensor`` (device pointer, shape, dtype): a stage's outputs feed the
next stage without a host round trip; only ``to_host`` copies back (through a pinned
buffer, then synchronises the stream).

Buffer lifetime
---------------
Every engine output has a ``BufferPool`` of device buffers sized for the profile's
maximum object batch; one buffer per output is allocated on ``open``. A run takes a
buffer no live handle points into; a ``DeviceTensor`` registers itself with its buffer
(a weak set), so the buffer becomes reusable the moment the last handle to it is
dropped. The session's long-lived handles (``memory_first`` for the whole video,
``memory_prev`` and ``pending`` for a frame) therefore can never be overwritten: while
they live, the pool hands out another buffer, allocated once and then reused, so the
pool grows to the session's working set (for ``memory_encoder.memory``: first, previous
and the new previous memory = 3 buffers per video) and stays there; no device memory is
allocated in the steady state and no device-to-device copy is made. A fixed ring would
silently corrupt a memory once more handles live than it has slots (several videos on
one backend); the pool only costs memory in that case. All work is ordered on one
stream, so a buffer reused after its handle died is written only after every queued
read of it. ``max_buffers`` bounds a pool (a leak guard: handles kept forever).
Host uploads (``from_host``) use a pool of their own, each buffer paired with a pinned
staging buffer and an event (so the caller's array may be reused at once and the upload
is asynchronous); ``concat`` and ``take`` copy device to device into a scratch pool.

CUDA graphs (``cuda_graphs=True``, default off): after a normal run with the current
shapes, ``execute_async_v3`` is captured once per set of tensor addresses and replayed
with ``cudaGraphLaunch``; a shape change drops the engine's graphs (TensorRT needs one
ordinary enqueue after a shape change before capture). A capture that fails turns
graphs off for that engine, with a warning.

``run``, ``from_host``, ``to_host``, ``concat`` and ``take`` hold one lock: sessions of
several threads are safe, their GPU work is serialised on the one stream.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import threading
import weakref
from collections.abc import Mapping, Sequence
from math import prod
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import InputError, MissingDependencyError
from ...export.engine_cache import PRECISIONS, RuntimeInfo, compatibility, find_entry, rebuild_command
from ...export.trt_env import INSTALL_HINT, GPUUnavailableError, require_tensorrt, runtime_info, trt
from ...export.trt_env import load_cudart as _load_cudart
from ...manifest import OBJECTS_AXIS, GraphEntry, Manifest
from .base import REQUIRED_GRAPHS, Backend, BackendError, Handle

if TYPE_CHECKING:
    from ...export.trt_build import LoadedEngine

log = logging.getLogger(__name__)

#: TensorRT DataType names -> numpy dtype names.
DTYPES = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8", "INT32": "int32", "INT64": "int64",
          "BOOL": "bool", "UINT8": "uint8"}
#: Inputs the session uploads from the host (the others are stage outputs), and how many
#: buffers of each are allocated on open (the pending frame lives while the next is uploaded).
HOST_INPUTS = {"frame": 2, "padding": 1, "masks": 1}
#: CUDA graphs kept per engine (one per set of tensor addresses at the current shapes).
MAX_GRAPHS = 16
_H2D, _D2H, _D2D = "cudaMemcpyHostToDevice", "cudaMemcpyDeviceToHost", "cudaMemcpyDeviceToDevice"


class CudaError(BackendError):
    """A CUDA runtime call failed; the message names the call and the CUDA error."""


class TensorRTError(BackendError):
    """TensorRT refused a shape, an address, or an execution."""


def load_cudart() -> Any:
    """cuda-python's runtime bindings, or MissingDependencyError naming the TensorRT backend."""
    return _load_cudart("the TensorRT backend")


class Cuda:
    """Checked CUDA runtime calls: ``call("cudaMalloc", n)`` returns the result or raises CudaError."""

    def __init__(self, cudart: Any) -> None:
        self.rt = cudart

    def call(self, name: str, *args: Any) -> Any:
        result = getattr(self.rt, name)(*args)
        err, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
        if int(err) != 0:
            raise CudaError(self.describe(name, err))
        return values[0] if len(values) == 1 else (values or None)

    def describe(self, call: str, err: Any) -> str:
        name, text = getattr(err, "name", None), ""
        try:
            name = _text(self.rt.cudaGetErrorName(err)[1]) or name
            text = _text(self.rt.cudaGetErrorString(err)[1])
        except Exception as exc:  # describing an error must not raise another
            log.debug("cannot describe CUDA error %s: %s", err, exc)
        hint = ""
        if name == "cudaErrorMemoryAllocation":
            hint = "; out of device memory: export with a smaller --max-objects or free the GPU"
        elif name in ("cudaErrorNoDevice", "cudaErrorInsufficientDriver"):
            hint = f"; the TensorRT backend needs a working NVIDIA GPU and driver: {INSTALL_HINT}"
        return f"CUDA call {call} failed with {name or 'error'} ({int(err)}){': ' + text if text else ''}{hint}"

    def quietly(self, name: str, *args: Any) -> None:
        """``call`` for clean-up: a failure is logged, not raised (the other resources still get freed)."""
        try:
            self.call(name, *args)
        except CudaError as exc:
            log.warning("tensorrt backend clean-up: %s", exc)

    def memcpy(self, dst: int, src: int, nbytes: int, kind: str, stream: Any) -> None:
        if nbytes:
            self.call("cudaMemcpyAsync", dst, src, nbytes, getattr(self.rt.cudaMemcpyKind, kind), stream)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------------- memory


class DeviceBuffer:
    """One device allocation; busy while a live ``DeviceTensor`` points into it.

    ``host``/``event``: the pinned staging buffer and event of an upload buffer (0/None otherwise).
    """

    def __init__(self, ptr: int, nbytes: int, label: str, host: int = 0, event: Any = None) -> None:
        self.ptr, self.nbytes, self.label, self.host, self.event = ptr, nbytes, label, host, event
        self.users: weakref.WeakSet[DeviceTensor] = weakref.WeakSet()

    @property
    def busy(self) -> bool:
        return len(self.users) > 0


class DeviceTensor:
    """The TensorRT backend's handle: a tensor in device memory (pointer, shape, dtype).

    It keeps its buffer from being reused while it lives; it is valid while the backend is open.
    """

    __slots__ = ("__weakref__", "buffer", "dtype", "shape")

    def __init__(self, buffer: DeviceBuffer, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        self.buffer, self.shape, self.dtype = buffer, tuple(int(d) for d in shape), np.dtype(dtype)
        assert self.nbytes <= buffer.nbytes, (self.shape, buffer.nbytes)
        buffer.users.add(self)

    @property
    def ptr(self) -> int:
        return self.buffer.ptr

    @property
    def nbytes(self) -> int:
        return prod(self.shape) * self.dtype.itemsize

    def __repr__(self) -> str:
        return f"DeviceTensor({self.dtype.name}{list(self.shape)} at {self.ptr:#x} in {self.buffer.label})"


class BufferPool:
    """Device buffers of one kind, reused once no live handle points into them.

    Args:
        size: bytes of every buffer (an engine output at the maximum profile), or None to
            allocate what is asked (uploads, scratch).
        pinned: pair each buffer with a pinned host buffer and an event (uploads).
        limit: the most buffers the pool holds (a guard against handles kept forever).
    """

    def __init__(self, cuda: Cuda, label: str, size: int | None, limit: int, pinned: bool = False) -> None:
        self.cuda, self.label, self.size, self.limit, self.pinned = cuda, label, size, limit, pinned
        self.buffers: list[DeviceBuffer] = []

    def acquire(self, nbytes: int) -> DeviceBuffer:
        """The smallest free buffer of at least ``nbytes``; allocates one when every buffer is busy."""
        for attempt in range(2):
            free = [b for b in self.buffers if not b.busy and b.nbytes >= nbytes]
            if free:
                return min(free, key=lambda b: b.nbytes)
            if len(self.buffers) < self.limit:
                return self.allocate(max(nbytes, self.size or 0))
            if attempt == 0:
                gc.collect()  # handles in reference cycles
        raise BackendError(f"{self.label}: {self.limit} device buffers are all held by live handles; a caller "
                           "keeps handles (e.g. every frame's memory) alive; drop them, or pass a larger "
                           "max_buffers to the TensorRT backend")

    def allocate(self, nbytes: int) -> DeviceBuffer:
        ptr = int(self.cuda.call("cudaMalloc", max(nbytes, 1)))
        buffer = DeviceBuffer(ptr, nbytes, f"{self.label}#{len(self.buffers)}")
        self.buffers.append(buffer)
        if self.pinned:
            buffer.host = int(self.cuda.call("cudaMallocHost", max(nbytes, 1)))
            buffer.event = self.cuda.call("cudaEventCreateWithFlags", self.cuda.rt.cudaEventDisableTiming)
        log.debug("allocated %s: %d bytes", buffer.label, nbytes)
        return buffer

    def free(self) -> None:
        """Free every buffer (live handles into them become invalid); failures are logged."""
        for buffer in self.buffers:
            self.cuda.quietly("cudaFree", buffer.ptr)
            if buffer.host:
                self.cuda.quietly("cudaFreeHost", buffer.host)
            if buffer.event is not None:
                self.cuda.quietly("cudaEventDestroy", buffer.event)
            buffer.ptr = buffer.host = 0
        self.buffers.clear()


def host_view(ptr: int, nbytes: int) -> np.ndarray:
    """A uint8 numpy view of ``nbytes`` of host memory at ``ptr`` (pinned staging buffers)."""
    return np.ctypeslib.as_array((ctypes.c_ubyte * nbytes).from_address(ptr))


# ---------------------------------------------------------------------- engines


def engine_io(engine: trt.ICudaEngine) -> dict[str, tuple[bool, str, tuple[int, ...]]]:
    """name -> (is input, numpy dtype name, shape with -1 on dynamic axes) of an engine's tensors."""
    io = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        dims = engine.get_tensor_shape(name)
        kind = engine.get_tensor_dtype(name).name
        io[name] = (engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT, DTYPES.get(kind, kind),
                    tuple(int(dims[j]) for j in range(len(dims))))
    return io


def check_engine_io(graph: str, io: Mapping[str, tuple[bool, str, tuple[int, ...]]], entry: GraphEntry,
                    fix: str) -> None:
    """Raise BackendError unless the engine's tensors are the manifest's (names, dtypes, shapes)."""
    want = {t.name: (True, t.dtype, tuple(-1 if d == OBJECTS_AXIS else int(d) for d in t.shape))
            for t in entry.inputs}
    want.update({t.name: (False, t.dtype, tuple(-1 if d == OBJECTS_AXIS else int(d) for d in t.shape))
                 for t in entry.outputs})
    if dict(io) != want:
        diff = sorted(set(io.items()) ^ set(want.items()))
        raise BackendError(f"the {graph} engine's tensors differ from the manifest's ((is input, dtype, shape), "
                           f"both listed: {diff}); the engine does not match the export (stale?): rebuild it with: "
                           f"{fix}")


class EngineRunner:
    """One engine with its execution context, output pools and the bindings last set on it."""

    def __init__(self, graph: str, loaded: LoadedEngine, entry: GraphEntry, cuda: Cuda, stream: Any, *,
                 fix: str, max_buffers: int, cuda_graphs: bool) -> None:
        self.graph, self.loaded, self.cuda, self.stream = graph, loaded, cuda, stream
        engine: trt.ICudaEngine = loaded.engine
        self.io = engine_io(engine)
        check_engine_io(graph, self.io, entry, fix)
        self.inputs = [t.name for t in entry.inputs]
        self.outputs = [t.name for t in entry.outputs]
        dynamic = [n for n in self.inputs if -1 in self.io[n][2]]
        self.limit = min((int(engine.get_tensor_profile_shape(n, 0)[2][0]) for n in dynamic), default=0)
        context = engine.create_execution_context()
        if context is None:
            raise TensorRTError(f"TensorRT could not create an execution context for {graph} (out of device "
                                "memory?)")
        self.context: trt.IExecutionContext = context
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.out_shapes: dict[str, tuple[int, ...]] = {}
        self.use_graphs = cuda_graphs
        self.graphs: dict[tuple[int, ...], Any] = {}
        max_shapes = self._bind_shapes({n: self._profile_max(n) for n in self.inputs})
        self.pools = {n: BufferPool(cuda, f"{graph}.{n}", prod(s) * np.dtype(self.io[n][1]).itemsize,
                                    max_buffers) for n, s in max_shapes.items()}
        for name, spec in ((t.name, t) for t in entry.outputs):
            if max_shapes[name] != spec.concrete(self.limit or 1):
                raise BackendError(f"the {graph} engine gives {name} the shape {max_shapes[name]} at its largest "
                                   f"profile, the manifest {spec.concrete(self.limit or 1)}; rebuild: {fix}")
        try:
            for pool in self.pools.values():
                pool.allocate(pool.size or 0)
        except BaseException:
            for pool in self.pools.values():
                pool.free()
            raise

    def _profile_max(self, name: str) -> tuple[int, ...]:
        shape = self.io[name][2]
        if -1 not in shape:
            return shape
        hi = self.loaded.engine.get_tensor_profile_shape(name, 0)[2]
        return tuple(int(hi[j]) for j in range(len(hi)))

    def _bind_shapes(self, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        """Set the input shapes that changed; returns the output shapes."""
        changed = False
        for name, shape in shapes.items():
            if self.shapes.get(name) != shape:
                if not self.context.set_input_shape(name, shape):
                    raise TensorRTError(f"{self.graph}: TensorRT refused the shape {shape} of input {name} "
                                        f"(the engine's profile allows 1..{self.limit} objects)")
                self.shapes[name] = shape
                changed = True
        if changed or not self.out_shapes:
            self.out_shapes = {}
            for name in self.outputs:
                dims = self.context.get_tensor_shape(name)
                self.out_shapes[name] = tuple(int(dims[j]) for j in range(len(dims)))
            self._drop_graphs()
        return self.out_shapes

    def _bind_address(self, name: str, ptr: int) -> None:
        if self.addresses.get(name) != ptr:
            if not self.context.set_tensor_address(name, ptr):
                raise TensorRTError(f"{self.graph}: TensorRT refused the address {ptr:#x} of tensor {name}")
            self.addresses[name] = ptr

    def run(self, inputs: Mapping[str, DeviceTensor]) -> dict[str, DeviceTensor]:
        """Enqueue one execution on the stream; the outputs are new handles (not yet computed)."""
        out_shapes = self._bind_shapes({n: inputs[n].shape for n in self.inputs})
        outputs = {n: DeviceTensor(self.pools[n].acquire(prod(s) * np.dtype(self.io[n][1]).itemsize), s,
                                   np.dtype(self.io[n][1])) for n, s in out_shapes.items()}
        for name, tensor in (*inputs.items(), *outputs.items()):
            self._bind_address(name, tensor.ptr)
        key = tuple(self.addresses[n] for n in (*self.inputs, *self.outputs))
        if self.use_graphs and key in self.graphs:
            self.cuda.call("cudaGraphLaunch", self.graphs[key], self.stream)
            return outputs
        self._execute()
        if self.use_graphs:
            self._capture(key)
        return outputs

    def _execute(self) -> None:
        if not self.context.execute_async_v3(int(self.stream)):
            raise TensorRTError(f"TensorRT could not execute {self.graph} (see the TensorRT log)")

    def _capture(self, key: tuple[int, ...]) -> None:
        """Capture the execution just enqueued as a CUDA graph for these addresses (replayed by ``run``)."""
        mode = self.cuda.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        try:
            self.cuda.call("cudaStreamBeginCapture", self.stream, mode)
            try:
                ok = self.context.execute_async_v3(int(self.stream))
            finally:
                graph = self.cuda.call("cudaStreamEndCapture", self.stream)  # always leave capture mode
            try:
                if not ok:
                    raise TensorRTError("execute_async_v3 failed during capture")
                if len(self.graphs) >= MAX_GRAPHS:  # the oldest address set goes
                    self.cuda.quietly("cudaGraphExecDestroy", self.graphs.pop(next(iter(self.graphs))))
                self.graphs[key] = self.cuda.call("cudaGraphInstantiate", graph, 0)
            finally:
                self.cuda.quietly("cudaGraphDestroy", graph)
        except (CudaError, TensorRTError) as exc:
            log.warning("%s: CUDA graph capture failed (%s); running it without CUDA graphs", self.graph, exc)
            self.use_graphs = False
            self._drop_graphs()

    def _drop_graphs(self) -> None:
        for exec_graph in self.graphs.values():
            self.cuda.quietly("cudaGraphExecDestroy", exec_graph)
        self.graphs.clear()

    def close(self) -> None:
        self._drop_graphs()
        for pool in self.pools.values():
            pool.free()
        del self.context


# ---------------------------------------------------------------------- the backend


def require_runtime(device: int = 0) -> RuntimeInfo:
    """TensorRT and the GPU here; raises naming ``pip install 'simvos-trt[gpu]'`` and the GPU otherwise."""
    try:
        require_tensorrt()
        load_cudart()
        return runtime_info(device)
    except MissingDependencyError as exc:
        raise MissingDependencyError(f"the TensorRT backend needs TensorRT 10, cuda-python and an NVIDIA GPU: "
                                     f"{exc}") from exc
    except GPUUnavailableError as exc:
        raise BackendError(f"the TensorRT backend needs an NVIDIA GPU: {exc}") from exc


def engine_problem(folder: str | Path, manifest: Manifest, precision: str, info: RuntimeInfo) -> str | None:
    """Why the recorded ``precision`` engines of ``folder`` cannot run with ``info`` (None if they can)."""
    for graph in REQUIRED_GRAPHS:
        entry = find_entry(manifest, graph, precision)
        if entry is None:
            return (f"{folder} has no {precision} engine for {graph}; build them with: "
                    f"{rebuild_command(folder, precision, force=False)}")
        reason = compatibility(entry, info)
        if reason is not None:
            return f"the {graph} engine cannot run here: {reason}; rebuild with: {rebuild_command(folder, precision)}"
    return None


class TensorRTBackend(Backend):
    """The export folder's TensorRT engines (``simvos-build``) on one GPU.

    Args:
        folder, manifest: the export folder and its manifest (with recorded engines).
        precision: the engine set to load, ``fp16`` (default) or ``fp32``.
        device: the CUDA device.
        cuda_graphs: capture and replay each engine's execution as a CUDA graph.
        max_buffers: the most device buffers per engine output (see the module docstring).
        graphs: load only these engines (verification of a partial build); default all.
    """

    name = "tensorrt"

    def __init__(self, folder: str | Path, manifest: Manifest, *, precision: str = "fp16", device: int = 0,
                 cuda_graphs: bool = False, max_buffers: int = 64, graphs: Sequence[str] | None = None) -> None:
        super().__init__(folder, manifest)
        if precision not in PRECISIONS:
            raise BackendError(f"precision: got {precision!r}, expected one of {PRECISIONS}")
        unknown = sorted(set(graphs or ()) - set(REQUIRED_GRAPHS))
        if unknown:
            raise BackendError(f"graphs: {unknown} are not graphs of an export; expected some of {REQUIRED_GRAPHS}")
        self.graphs = tuple(g for g in REQUIRED_GRAPHS if graphs is None or g in graphs)
        self.precision, self.device, self.cuda_graphs, self.max_buffers = precision, device, cuda_graphs, max_buffers
        self._lock = threading.RLock()
        self._runners: dict[str, EngineRunner] = {}
        self._cuda: Cuda | None = None
        self._stream: Any = None
        self._uploads: BufferPool | None = None
        self._scratch: BufferPool | None = None
        self._pinned = (0, 0)  # (pointer, bytes) of the pinned download buffer

    # ------------------------------------------------------------------ lifecycle

    def _open(self) -> None:
        from ...export.trt_build import load_engine

        require_runtime(self.device)
        cuda = self._cuda = Cuda(load_cudart())
        try:
            cuda.call("cudaSetDevice", self.device)
            self._stream = cuda.call("cudaStreamCreateWithFlags", cuda.rt.cudaStreamNonBlocking)
            fix = rebuild_command(self.folder, self.precision)
            for graph in self.graphs:
                loaded = load_engine(self.folder, graph, self.precision, device=self.device)
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
        log.info("tensorrt: %s engines of %s on device %d, %.1f MiB of buffers", self.precision, self.folder,
                 self.device, sum(self.buffer_plan().values()) / 2**20)

    def _close(self) -> None:
        """Free everything (failures are logged, so one failed call leaves nothing else allocated)."""
        cuda = self._cuda
        if cuda is None:
            return
        if self._stream is not None:
            cuda.quietly("cudaStreamSynchronize", self._stream)
        for runner in self._runners.values():
            runner.close()
        for pool in (self._uploads, self._scratch):
            if pool is not None:
                pool.free()
        if self._pinned[0]:
            cuda.quietly("cudaFreeHost", self._pinned[0])
        if self._stream is not None:
            cuda.quietly("cudaStreamDestroy", self._stream)
        self._runners.clear()
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

    # ------------------------------------------------------------------ running

    def _run(self, graph: str, inputs: Mapping[str, Handle]) -> dict[str, Handle]:
        if graph not in self._runners:
            raise BackendError(f"the tensorrt backend was opened with the engines {list(self.graphs)} only")
        with self._lock:
            tensors = {k: v if isinstance(v, DeviceTensor) else self.from_host(v) for k, v in inputs.items()}
            return dict(self._runners[graph].run(tensors))

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

    def describe(self, handle: Handle) -> tuple[str, tuple[int, ...]]:
        if isinstance(handle, np.ndarray):
            return handle.dtype.name, tuple(handle.shape)
        tensor = self._tensor(handle)
        return tensor.dtype.name, tensor.shape

    def concat(self, handles: Sequence[Handle]) -> Handle:
        """Handles joined along the object axis (axis 0) by device-to-device copies."""
        tensors = [self._tensor(h) for h in handles]
        if len(tensors) == 1:
            return tensors[0]
        first = tensors[0]
        if any(t.dtype != first.dtype or t.shape[1:] != first.shape[1:] for t in tensors):
            raise InputError(f"concat: the handles differ beyond the object axis: {[repr(t) for t in tensors]}")
        with self._lock:
            cuda = self._need_open()
            assert self._scratch is not None
            buffer = self._scratch.acquire(sum(t.nbytes for t in tensors))
            offset = 0
            for t in tensors:
                cuda.memcpy(buffer.ptr + offset, t.ptr, t.nbytes, _D2D, self._stream)
                offset += t.nbytes
            return DeviceTensor(buffer, (sum(t.shape[0] for t in tensors), *first.shape[1:]), first.dtype)

    def take(self, handle: Handle, start: int, stop: int) -> Handle:
        """Objects ``start:stop`` (axis 0) of a handle, copied device to device."""
        tensor = self._tensor(handle)
        if not 0 <= start < stop <= tensor.shape[0]:
            raise InputError(f"take: objects {start}:{stop} of a handle with {tensor.shape[0]}")
        per_object = tensor.nbytes // tensor.shape[0]
        with self._lock:
            cuda = self._need_open()
            assert self._scratch is not None
            buffer = self._scratch.acquire((stop - start) * per_object)
            cuda.memcpy(buffer.ptr, tensor.ptr + start * per_object, (stop - start) * per_object, _D2D,
                        self._stream)
            return DeviceTensor(buffer, (stop - start, *tensor.shape[1:]), tensor.dtype)

    def _tensor(self, handle: Handle) -> DeviceTensor:
        if not isinstance(handle, DeviceTensor):
            raise InputError(f"the tensorrt backend takes DeviceTensor handles (from its from_host or run) or "
                             f"numpy arrays, got {type(handle).__name__}")
        if not handle.buffer.ptr:
            raise BackendError(f"{handle!r} belongs to a closed tensorrt backend")
        return handle
