"""One TensorRT engine on the device: execution context, output pools, bindings set only on change,
optional CUDA graphs (docs/runtime.md)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from math import prod
from typing import Any

import numpy as np

from ...errors import BackendError
from ...manifest import GraphEntry
from ...trt.cuda import Cuda
from ...trt.engine import LoadedEngine, dims, engine_io, manifest_io
from ...trt.library import trt
from .trt_memory import BufferPool, DeviceTensor

log = logging.getLogger(__name__)

#: CUDA graphs kept per engine (one per set of tensor addresses at the current shapes).
MAX_GRAPHS = 16


def check_engine_io(graph: str, io: Mapping[str, tuple[bool, str, tuple[int, ...]]], entry: GraphEntry,
                    fix: str) -> None:
    """Raise BackendError unless the engine's tensors are the manifest's (names, dtypes, shapes)."""
    want = manifest_io(entry)
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
            raise BackendError(f"TensorRT could not create an execution context for {graph} (out of device memory?)")
        self.context: trt.IExecutionContext = context
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.out_shapes: dict[str, tuple[int, ...]] = {}
        self.use_graphs = cuda_graphs
        self.captured: dict[tuple[int, ...], Any] = {}
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
            self.close()
            raise

    def _profile_max(self, name: str) -> tuple[int, ...]:
        shape = self.io[name][2]
        if -1 not in shape:
            return shape
        return dims(self.loaded.engine.get_tensor_profile_shape(name, 0)[2])

    def _bind_shapes(self, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        """Set the input shapes that changed; returns the output shapes."""
        changed = False
        for name, shape in shapes.items():
            if self.shapes.get(name) != shape:
                if not self.context.set_input_shape(name, shape):
                    raise BackendError(f"{self.graph}: TensorRT refused the shape {shape} of input {name} "
                                       f"(the engine's profile allows 1..{self.limit} objects)")
                self.shapes[name] = shape
                changed = True
        if changed or not self.out_shapes:
            self.out_shapes = {name: dims(self.context.get_tensor_shape(name)) for name in self.outputs}
            self._drop_graphs()
        return self.out_shapes

    def run(self, inputs: Mapping[str, DeviceTensor]) -> dict[str, DeviceTensor]:
        """Enqueue one execution on the stream; the outputs are new handles (not yet computed)."""
        out_shapes = self._bind_shapes({n: inputs[n].shape for n in self.inputs})
        outputs = {n: DeviceTensor(self.pools[n].acquire(prod(s) * np.dtype(self.io[n][1]).itemsize), s,
                                   np.dtype(self.io[n][1])) for n, s in out_shapes.items()}
        for name, tensor in (*inputs.items(), *outputs.items()):
            if self.addresses.get(name) != tensor.ptr:
                if not self.context.set_tensor_address(name, tensor.ptr):
                    raise BackendError(f"{self.graph}: TensorRT refused the address {tensor.ptr:#x} of tensor {name}")
                self.addresses[name] = tensor.ptr
        key = tuple(self.addresses[n] for n in (*self.inputs, *self.outputs))
        if self.use_graphs and key in self.captured:
            self.cuda.call("cudaGraphLaunch", self.captured[key], self.stream)
            return outputs
        if not self.context.execute_async_v3(int(self.stream)):
            raise BackendError(f"TensorRT could not execute {self.graph} (see the TensorRT log)")
        if self.use_graphs:
            self._capture(key)
        return outputs

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
                    raise BackendError("execute_async_v3 failed during capture")
                if len(self.captured) >= MAX_GRAPHS:  # the oldest address set goes
                    self.cuda.quietly("cudaGraphExecDestroy", self.captured.pop(next(iter(self.captured))))
                self.captured[key] = self.cuda.call("cudaGraphInstantiate", graph, 0)
            finally:
                self.cuda.quietly("cudaGraphDestroy", graph)
        except BackendError as exc:  # a CUDA call or TensorRT failed
            log.warning("%s: CUDA graph capture failed (%s); running it without CUDA graphs", self.graph, exc)
            self.use_graphs = False
            self._drop_graphs()

    def _drop_graphs(self) -> None:
        for exec_graph in self.captured.values():
            self.cuda.quietly("cudaGraphExecDestroy", exec_graph)
        self.captured.clear()

    def close(self) -> None:
        self._drop_graphs()
        for pool in self.pools.values():
            pool.free()
        del self.context
