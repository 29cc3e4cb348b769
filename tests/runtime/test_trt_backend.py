"""The TensorRT backend against a fake TensorRT runtime and a fake CUDA runtime, and (on a GPU) against ONNX Runtime.

Fakes stand in only for what needs a GPU: running engines and CUDA calls (building engines
is tested with the real TensorRT-RTX builder in tests/export/test_trt_build.py). The fakes:
``FakeCudart`` is cuda.bindings.runtime with host memory standing in for device memory
(every allocation a numpy array, pointers its real address, copies checked against the
allocations they touch); ``FakeEngine`` is an ICudaEngine whose execution reads its inputs
from that memory, computes them with a Python function (small numpy stand-ins for the
stages, or the export's ONNX graphs through ONNX Runtime) and writes the outputs back.
What they show: buffer planning, bindings set only on change, handles never overwritten
while alive, CUDA errors named, the choice of ``auto``. What they cannot show: that real
TensorRT and CUDA behave as the fakes (the ``gpu`` tests do, where they run).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import shutil
import sys
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from videos import SMALL, SMALL_MAX_OBJECTS, gpu_missing, moving_video

from simvos_trt.config import SimVOSConfig
from simvos_trt.errors import InputError, MissingDependencyError
from simvos_trt.io import write_json_atomic
from simvos_trt.manifest import (
    MANIFEST,
    GraphEntry,
    Manifest,
    TensorSpec,
    Weights,
    read_manifest,
    sha256_file,
)
from simvos_trt.runtime import BackendError, VideoSegmenter, create_backend
from simvos_trt.runtime.backends import Backend
from simvos_trt.runtime.backends.trt import DeviceTensor, TensorRTBackend
from simvos_trt.trt.engine import host_platform
from simvos_trt.trt.plan import BuildSettings, Target, objects_range, plan_build
from simvos_trt.trt.records import EngineEntry, record_engines

TRT_VERSION = "11.4.0.1"
A100 = Target("tensorrt", TRT_VERSION, host_platform(), ((8, 0),), "NVIDIA A100-SXM4-80GB")
H, W = SMALL
N, C = (H // 16) * (W // 16), 192
MAX = 3


# --------------------------------------------------------------------------- fake CUDA runtime


class CudaErr(int):
    NAMES = {0: "cudaSuccess", 1: "cudaErrorInvalidValue", 2: "cudaErrorMemoryAllocation",
             100: "cudaErrorNoDevice"}

    @property
    def name(self) -> str:
        return self.NAMES.get(int(self), f"cudaError{int(self)}")


OK = CudaErr(0)
MemcpyKind = enum.Enum("cudaMemcpyKind", "cudaMemcpyHostToHost cudaMemcpyHostToDevice cudaMemcpyDeviceToHost "
                       "cudaMemcpyDeviceToDevice", start=0)


class Stream:
    def __init__(self, handle: int) -> None:
        self.handle = handle

    def __int__(self) -> int:
        return self.handle


class FakeCudart(types.ModuleType):
    """cuda.bindings.runtime over host memory; ``fail[name] = code`` makes a call fail."""

    def __init__(self) -> None:
        super().__init__("cuda.bindings.runtime")
        self.memory: dict[int, tuple[np.ndarray, str]] = {}  # pointer -> (bytes, "device" | "host")
        self.calls: list[str] = []
        self.fail: dict[str, int] = {}
        self.capture: list[Callable[[], None]] | None = None
        self.graph_launches = 0
        self.cudaMemcpyKind = MemcpyKind
        self.cudaStreamCaptureMode = types.SimpleNamespace(cudaStreamCaptureModeThreadLocal=1)
        self.cudaStreamNonBlocking, self.cudaEventDisableTiming = 1, 2
        props = types.SimpleNamespace(name=b"NVIDIA A100-SXM4-80GB\0", major=8, minor=0)
        self._api: dict[str, Callable[..., tuple[Any, ...]]] = {
            "cudaGetDeviceCount": lambda: (1,), "cudaGetDeviceProperties": lambda d: (props,),
            "cudaSetDevice": lambda d: (), "cudaMalloc": lambda n: (self._alloc(n, "device"),),
            "cudaMallocHost": lambda n: (self._alloc(n, "host"),), "cudaFree": lambda p: self._free(p, "device"),
            "cudaFreeHost": lambda p: self._free(p, "host"), "cudaMemcpyAsync": self._memcpy,
            "cudaStreamCreateWithFlags": lambda f: (Stream(7),), "cudaStreamSynchronize": lambda s: (),
            "cudaStreamDestroy": lambda s: (), "cudaEventCreateWithFlags": lambda f: (object(),),
            "cudaEventRecord": lambda e, s: (), "cudaEventSynchronize": lambda e: (),
            "cudaEventDestroy": lambda e: (), "cudaStreamBeginCapture": self._begin,
            "cudaStreamEndCapture": self._end, "cudaGraphInstantiate": lambda g, f: (list(g),),
            "cudaGraphLaunch": self._launch, "cudaGraphDestroy": lambda g: (),
            "cudaGraphExecDestroy": lambda g: (), "cudaMemGetInfo": lambda: (1 << 30, 1 << 31)}

    def __getattr__(self, name: str) -> Any:
        api = self.__dict__.get("_api", {})
        if name not in api:
            raise AttributeError(name)

        def call(*args: Any) -> tuple[Any, ...]:
            self.calls.append(name)
            if name in self.fail:
                return (CudaErr(self.fail[name]),)
            return (OK, *api[name](*args))

        return call

    def cudaGetErrorName(self, err: Any) -> tuple[Any, bytes]:
        return OK, CudaErr(int(err)).name.encode()

    def cudaGetErrorString(self, err: Any) -> tuple[Any, bytes]:
        return OK, {2: b"out of memory"}.get(int(err), b"an error")

    # memory
    def _alloc(self, nbytes: int, kind: str) -> int:
        block = np.zeros(nbytes, np.uint8)
        self.memory[block.ctypes.data] = (block, kind)
        return int(block.ctypes.data)

    def _free(self, ptr: int, kind: str) -> tuple[Any, ...]:
        block = self.memory.pop(ptr, None)
        assert block is not None and block[1] == kind, f"freeing unknown {kind} pointer {ptr:#x}"
        return ()

    def block(self, ptr: int, nbytes: int, kind: str) -> np.ndarray:
        """The ``nbytes`` at ``ptr``, which must lie inside one live allocation of ``kind``."""
        for base, (block, k) in self.memory.items():
            if base <= ptr and ptr + nbytes <= base + block.nbytes and k == kind:
                return block[ptr - base : ptr - base + nbytes]
        raise AssertionError(f"{nbytes} bytes at {ptr:#x} are not inside a live {kind} allocation")

    def _memcpy(self, dst: int, src: int, nbytes: int, kind: Any, stream: Any) -> tuple[Any, ...]:
        src_kind, dst_kind = {"HostToDevice": ("host", "device"), "DeviceToHost": ("device", "host"),
                              "DeviceToDevice": ("device", "device")}[kind.name.removeprefix("cudaMemcpy")]
        self.block(dst, nbytes, dst_kind)[:] = self.block(src, nbytes, src_kind)
        return ()

    def read(self, ptr: int, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return self.block(ptr, nbytes, "device").view(dtype).reshape(shape).copy()

    def write(self, ptr: int, array: np.ndarray) -> None:
        self.block(ptr, array.nbytes, "device")[:] = np.ascontiguousarray(array).reshape(-1).view(np.uint8)

    def device_bytes(self) -> list[int]:
        return sorted(b.nbytes for b, kind in self.memory.values() if kind == "device")

    # graphs
    def _begin(self, stream: Any, mode: Any) -> tuple[Any, ...]:
        self.capture = []
        return ()

    def _end(self, stream: Any) -> tuple[Any, ...]:
        graph, self.capture = self.capture, None
        return (graph,)

    def _launch(self, graph: list[Callable[[], None]], stream: Any) -> tuple[Any, ...]:
        self.graph_launches += 1
        for work in graph:
            work()
        return ()


# --------------------------------------------------------------------------- fake TensorRT engines

TrtDataType = enum.Enum("DataType", "FLOAT HALF INT8 INT32 INT64 BOOL UINT8")
TensorIOMode = enum.Enum("TensorIOMode", "NONE INPUT OUTPUT")
_TRT_TYPE = {"float32": "FLOAT", "float16": "HALF", "uint8": "UINT8", "int64": "INT64", "int32": "INT32"}
Compute = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine, self.shapes, self.addresses = engine, {}, {}
        self.shape_calls: list[tuple[str, tuple[int, ...]]] = []
        self.address_calls: list[str] = []
        self.executions = 0

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.shape_calls.append((name, tuple(shape)))
        lo, _, hi = self.engine.profile(name)
        if not all(a <= d <= b for a, d, b in zip(lo, shape, hi, strict=True)):
            return False
        self.shapes[name] = tuple(shape)
        return True

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.address_calls.append(name)
        self.addresses[name] = ptr
        return True

    def objects(self) -> int:
        return next((self.shapes[t.name][0] for t in self.engine.entry.inputs if "objects" in t.shape), 1)

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        spec = next(t for t in self.engine.entry.outputs if t.name == name)
        return spec.concrete(self.objects())

    def execute_async_v3(self, stream: int) -> bool:
        assert stream == 7, "the backend's stream"
        shapes, addresses = dict(self.shapes), dict(self.addresses)
        outputs = {t.name: (addresses[t.name], self.get_tensor_shape(t.name)) for t in self.engine.entry.outputs}
        cuda = self.engine.cuda

        def work() -> None:
            self.executions += 1
            inputs = {t.name: cuda.read(addresses[t.name], shapes[t.name], t.dtype) for t in self.engine.entry.inputs}
            for name, value in self.engine.compute(inputs).items():
                ptr, shape = outputs[name]
                assert value.shape == shape, (name, value.shape, shape)
                cuda.write(ptr, value)

        if cuda.capture is not None:
            cuda.capture.append(work)
        else:
            work()
        return True


class FakeEngine:
    """An ICudaEngine for one manifest graph, computing with ``compute``."""

    def __init__(self, entry: GraphEntry, max_objects: int, compute: Compute, cuda: FakeCudart) -> None:
        self.entry, self.max_objects, self.compute, self.cuda = entry, max_objects, compute, cuda
        self.tensors = [*entry.inputs, *entry.outputs]
        self.contexts: list[FakeContext] = []

    num_io_tensors = property(lambda self: len(self.tensors))

    def get_tensor_name(self, i: int) -> str:
        return self.tensors[i].name

    def _spec(self, name: str) -> TensorSpec:
        return next(t for t in self.tensors if t.name == name)

    def get_tensor_mode(self, name: str) -> Any:
        return TensorIOMode.INPUT if self._spec(name) in self.entry.inputs else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> Any:
        return TrtDataType[_TRT_TYPE[self._spec(name).dtype]]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return tuple(-1 if d == "objects" else int(d) for d in self._spec(name).shape)

    def profile(self, name: str) -> tuple[tuple[int, ...], ...]:
        spec = self._spec(name)
        return tuple(spec.concrete(n) for n in (1, min(2, self.max_objects), self.max_objects))

    def get_tensor_profile_shape(self, name: str, index: int) -> list[tuple[int, ...]]:
        assert index == 0
        return list(self.profile(name))

    def create_execution_context(self) -> FakeContext:
        self.contexts.append(FakeContext(self))
        return self.contexts[-1]


class Severity(enum.Enum):
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)


class ILogger:
    INTERNAL_ERROR, ERROR, WARNING = Severity.INTERNAL_ERROR, Severity.ERROR, Severity.WARNING
    Severity = Severity


class EngineTensorRT(types.ModuleType):
    """The runtime half of ``tensorrt``: its Runtime deserializes ``fake-engine:<graph>`` files into FakeEngines."""

    def __init__(self, computes: Mapping[str, Compute], manifest: Manifest, cuda: FakeCudart) -> None:
        super().__init__("tensorrt")
        self.__version__, self.Builder, self.ILogger = TRT_VERSION, object, ILogger
        self.TensorIOMode, self.engines = TensorIOMode, {}
        fake = self

        class Runtime:
            def __init__(self, logger: Any) -> None:
                self.engine_host_code_allowed = False

            def deserialize_cuda_engine(self, data: bytes) -> FakeEngine:
                graph = data.decode().removeprefix("fake-engine:")
                fake.engines[graph] = FakeEngine(manifest.graphs[graph], manifest.max_objects, computes[graph], cuda)
                return fake.engines[graph]

        self.Runtime = Runtime


def record_fake_engines(folder: Path) -> None:
    """Write ``<graph>.engine`` files and record them as built with TensorRT on the fake A100."""
    manifest = read_manifest(folder, verify=False)
    entries = []
    for name, graph in manifest.graphs.items():
        plan = plan_build(name, graph, objects_range(manifest), BuildSettings())
        path = folder / plan.engine_file
        path.write_bytes(f"fake-engine:{name}".encode())
        entries.append(EngineEntry(plan, A100, sha256_file(path), path.stat().st_size, "key"))
    record_engines(folder, entries)


# --------------------------------------------------------------------------- numpy stand-ins for the stages


def _patches(x: np.ndarray) -> np.ndarray:
    """(B, H, W) -> (B, N) patch means."""
    B = x.shape[0]
    return x.reshape(B, H // 16, 16, W // 16, 16).mean(axis=(2, 4)).reshape(B, N)


def _pixels(s: np.ndarray) -> np.ndarray:
    """(B, N) -> (B, 1, H, W) by repeating each patch value."""
    return s.reshape(-1, 1, H // 16, 1, W // 16, 1).repeat(16, 3).repeat(16, 5).reshape(-1, 1, H, W)


def _frame(frame: np.ndarray, padding: np.ndarray) -> np.ndarray:
    return _patches(frame[..., 0].astype(np.float32) / 255) + 0.01 * padding.sum()  # (1, N)


def query_encoder(x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    ramp = np.linspace(0.5, 1.5, C, dtype=np.float32)
    return {"query": (_frame(x["frame"], x["padding"])[:, :, None] * ramp).astype(np.float32)}


def memory_encoder(x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    tokens = _frame(x["frame"], x["padding"]) - 0.5 + 2 * _patches(x["masks"][:, 0])  # (B, N)
    return {"memory": np.repeat(tokens[:, :, None], C, axis=2).astype(np.float32)}


def decoder(x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    s = (x["query"] * x["memory_first"]).mean(-1) * 4
    if "memory_prev" in x:
        s = s + (x["query"] * x["memory_prev"]).mean(-1)
    return {"prob": _pixels((1 / (1 + np.exp(1 - s))).astype(np.float32))}


def aggregate(x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    p = x["prob"]
    agg = np.concatenate([np.prod(1 - p, axis=0, keepdims=True), p])
    agg = np.clip(agg, 1e-7, 1 - 1e-7)
    logit = np.log(agg / (1 - agg))
    e = np.exp(logit - logit.max(0))
    agg = (e / e.sum(0)).astype(np.float32)
    return {"background": agg[:1], "objects": agg[1:], "labels": agg.argmax(0).astype(np.uint8)}


STAGES: dict[str, Compute] = {"query_encoder": query_encoder, "memory_encoder": memory_encoder,
                              "joint_decoder_1mem": decoder, "joint_decoder_2mem": decoder, "aggregate": aggregate}


class NumpyBackend(Backend):
    """The reference: the same stand-ins on numpy handles (every handle its own array)."""

    name = "numpy"

    def _open(self) -> None: ...

    def _close(self) -> None: ...

    def object_limit(self, graph: str) -> int:
        return self.manifest.max_objects

    def _run(self, graph: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        return STAGES[graph](dict(inputs))

    def to_host(self, handle: Any) -> np.ndarray:
        return np.array(handle)

    def from_host(self, array: np.ndarray) -> Any:
        return np.array(array)

    def dtype_and_shape(self, handle: Any) -> tuple[str, tuple[int, ...]]:
        return handle.dtype.name, handle.shape


def stand_in_folder(folder: Path, max_objects: int = MAX) -> Path:
    """An export folder for the numpy stand-ins (graph files are placeholders) with fake fp16 engines."""
    frame = (TensorSpec("frame", "uint8", (1, H, W, 3)), TensorSpec("padding", "int64", (4,)))
    memory = TensorSpec("memory", "float32", ("objects", N, C))
    prob = TensorSpec("prob", "float32", ("objects", 1, H, W))
    query = TensorSpec("query", "float32", (1, N, C))
    io = {"query_encoder": (frame, (query,)),
          "memory_encoder": ((*frame, TensorSpec("masks", "float32", ("objects", 1, H, W))), (memory,)),
          "joint_decoder_1mem": ((query, TensorSpec("memory_first", "float32", ("objects", N, C))), (prob,)),
          "joint_decoder_2mem": ((query, TensorSpec("memory_first", "float32", ("objects", N, C)),
                                  TensorSpec("memory_prev", "float32", ("objects", N, C))), (prob,)),
          "aggregate": ((prob,), (TensorSpec("background", "float32", (1, 1, H, W)),
                                  TensorSpec("objects", "float32", ("objects", 1, H, W)),
                                  TensorSpec("labels", "uint8", (1, H, W))))}
    folder.mkdir(parents=True)
    graphs = {}
    for name, (inputs, outputs) in io.items():
        (folder / f"{name}.onnx").write_bytes(name.encode())
        graphs[name] = GraphEntry(f"{name}.onnx", sha256_file(folder / f"{name}.onnx"), inputs, outputs)
    manifest = Manifest(config=SimVOSConfig(backbone="tiny", layer_index=1), height=H, width=W, uint8_input=True,
                        max_objects=max_objects, opset=17, checkpoint=Weights("random", seed=1), graphs=graphs)
    write_json_atomic(folder / MANIFEST, manifest.to_dict())
    record_fake_engines(folder)
    return folder


@pytest.fixture()
def cuda(monkeypatch) -> FakeCudart:
    """The fake CUDA runtime, installed."""
    monkeypatch.setattr("simvos_trt.trt.library._selected", None)
    fake = FakeCudart()
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", fake)
    return fake


@pytest.fixture()
def folder(tmp_path) -> Path:
    return stand_in_folder(tmp_path / "export")


def install_engines(monkeypatch, cuda: FakeCudart, folder: Path,
                    computes: Mapping[str, Compute] = STAGES) -> EngineTensorRT:
    trt = EngineTensorRT(computes, read_manifest(folder, verify=False), cuda)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt


@pytest.fixture()
def backend(monkeypatch, cuda, folder):
    install_engines(monkeypatch, cuda, folder)
    with TensorRTBackend(folder, read_manifest(folder)) as b:
        yield b


# --------------------------------------------------------------------------- tests with the fakes


def test_buffers_are_planned_for_the_largest_profile(backend, cuda):
    m = backend.manifest
    f32 = 4
    want = {"query_encoder.query#0": N * C * f32, "memory_encoder.memory#0": MAX * N * C * f32,
            "joint_decoder_1mem.prob#0": MAX * H * W * f32, "joint_decoder_2mem.prob#0": MAX * H * W * f32,
            "aggregate.background#0": H * W * f32, "aggregate.objects#0": MAX * H * W * f32,
            "aggregate.labels#0": H * W, "upload#0": H * W * 3, "upload#1": H * W * 3, "upload#2": 4 * 8,
            "upload#3": MAX * H * W * f32}
    assert backend.buffer_plan() == want
    assert backend.object_limit("joint_decoder_2mem") == backend.object_limit("aggregate") == m.max_objects == MAX
    # every device allocation is one of the planned buffers (nothing else is allocated on open)
    assert cuda.device_bytes() == sorted(want.values())
    # one pinned staging buffer per upload buffer, and one download buffer for the largest output
    host = sorted(b.nbytes for b, kind in cuda.memory.values() if kind == "host")
    assert host == sorted([H * W * 3, H * W * 3, 32, MAX * H * W * f32, MAX * H * W * f32])


def test_shapes_and_addresses_are_set_only_when_they_change(monkeypatch, cuda, folder):
    trt = install_engines(monkeypatch, cuda, folder)
    frames, mask = moving_video(6, H, W, objects=2)
    with VideoSegmenter(TensorRTBackend(folder, read_manifest(folder))) as seg:
        session = seg.start(frames[0], mask)
        session.step(frames[1])
        ctx = trt.engines["joint_decoder_2mem"].contexts[0]
        assert ctx.executions == 0
        for frame in frames[2:]:
            session.step(frame)
    assert ctx.executions == 4
    # the open binds the largest profile once, the first run 2 objects; then nothing changes
    assert ctx.shape_calls == [("query", (1, N, C)), ("memory_first", (MAX, N, C)), ("memory_prev", (MAX, N, C)),
                               ("memory_first", (2, N, C)), ("memory_prev", (2, N, C))]
    # query, memory_first: one buffer each for the whole video; memory_prev and prob alternate
    # between buffers as the previous frame's handles are still alive when the next is made
    assert ctx.address_calls.count("query") == 1 and ctx.address_calls.count("memory_first") == 1
    assert ctx.address_calls.count("memory_prev") <= 4 and ctx.address_calls.count("prob") <= 4
    query_ctx = trt.engines["query_encoder"].contexts[0]
    assert query_ctx.shape_calls == [("frame", (1, H, W, 3)), ("padding", (4,))]


def test_live_handles_are_never_overwritten(monkeypatch, cuda, folder):
    install_engines(monkeypatch, cuda, folder)
    frames, mask = moving_video(8, H, W, objects=3, seed=3)
    reference = NumpyBackend(folder, read_manifest(folder))
    with VideoSegmenter(reference) as ref, VideoSegmenter(TensorRTBackend(folder, read_manifest(folder))) as seg:
        want = list(ref.segment(frames, mask, return_prob=True))
        session = seg.video()
        got = [session.start(frames[0], mask, return_prob=True)]
        first = session.state.references[0][0]  # the first frame's memory: every object's reference
        first_host = seg.backend.to_host(first).copy()
        for frame in frames[1:]:
            got.append(session.step(frame, return_prob=True))
        assert isinstance(first, DeviceTensor)
        assert session.state.batches == [first]  # one batch of every object: the handle itself, never copied
        np.testing.assert_array_equal(seg.backend.to_host(first), first_host)
        # the pool grew to the working set (the reference, the previous memory of a step) and stopped there
        assert len(seg.backend._runners["memory_encoder"].pools["memory"].buffers) <= 3
    for t, ((labels, prob), (want_labels, want_prob)) in enumerate(zip(got, want, strict=True)):
        np.testing.assert_array_equal(labels, want_labels, err_msg=f"frame {t}")
        np.testing.assert_allclose(prob, want_prob, atol=1e-6, err_msg=f"frame {t}")


def test_two_videos_interleaved_keep_their_memories(monkeypatch, cuda, folder):
    install_engines(monkeypatch, cuda, folder)
    videos = [moving_video(5, H, W, objects=k, seed=k) for k in (1, 2)]
    with VideoSegmenter(NumpyBackend(folder, read_manifest(folder))) as ref:
        want = [[prob for _, prob in ref.segment(*v, return_prob=True)][1:] for v in videos]
    with VideoSegmenter(TensorRTBackend(folder, read_manifest(folder))) as seg:
        sessions = [seg.start(frames[0], mask) for frames, mask in videos]
        got: list[list[np.ndarray]] = [[], []]
        for t in range(1, 5):
            for k, session in enumerate(sessions):
                got[k].append(session.step(videos[k][0][t], return_prob=True)[1])
    for k in range(2):
        np.testing.assert_allclose(np.stack(got[k]), np.stack(want[k]), atol=1e-6, err_msg=f"video {k}")


def test_pools_sized_for_max_videos_never_run_out(monkeypatch, cuda, folder):
    """simvos-serve sizes the pools from --max-videos (``Limits.tensorrt_buffers``): that many open videos with
    the export's most objects, joining, corrected and removed over time, step to the end; a fixed
    max_buffers=64 runs out at about 30 videos."""
    from simvos_trt.serve.sessions import Limits

    install_engines(monkeypatch, cuda, folder)
    videos, limits = 40, Limits(max_videos=40)
    frames, mask = moving_video(7, H, W, objects=MAX, seed=4)
    # 1 and 3 from frame 0, 2 joins at 1: three decoder batches at frame 2 (old, fresh, old), then 2 is
    # corrected and 3 joins again... the most handles a video holds
    masks = {0: np.where(mask != 2, mask, 0).astype(np.uint8), 1: np.where(mask == 2, 2, 0).astype(np.uint8),
             2: np.where(mask == 3, 3, 0).astype(np.uint8), 4: mask}

    def run(max_buffers: int) -> dict[str, int]:
        """Step ``videos`` videos frame by frame, all open at once; returns the buffers each pool took."""
        with VideoSegmenter(TensorRTBackend(folder, read_manifest(folder), max_buffers=max_buffers)) as seg:
            sessions = [seg.start(frames[0], masks[0]) for _ in range(videos)]
            for t in range(1, len(frames)):
                for session in sessions:
                    if t == 5:
                        session.remove_objects([2])
                    session.step(frames[t], masks.get(t))
            backend = seg.backend
            pools = [p for r in backend._runners.values() for p in r.pools.values()]
            return {p.label: len(p.buffers) for p in [*pools, backend._uploads, backend._scratch]}

    limit = limits.tensorrt_buffers(instances=1, max_objects=MAX)
    taken = run(limit)
    assert 2 * videos < max(taken.values()) <= limit, taken  # more than the first and previous memories
    with pytest.raises(BackendError, match="device buffers are all held by live handles"):
        run(64)


def test_cuda_graphs_replay_and_match(monkeypatch, cuda, folder):
    install_engines(monkeypatch, cuda, folder)
    frames, mask = moving_video(6, H, W, objects=2)
    with VideoSegmenter(NumpyBackend(folder, read_manifest(folder))) as ref:
        want = list(ref.segment(frames, mask))
    with VideoSegmenter(TensorRTBackend(folder, read_manifest(folder), cuda_graphs=True)) as seg:
        got = list(seg.segment(frames, mask))
    assert cuda.graph_launches > 0
    np.testing.assert_array_equal(np.stack(got), np.stack(want))


def test_from_host_to_host_concat_take(backend):
    g = np.random.default_rng(0)
    a, b = g.random((2, 1, H, W), dtype=np.float32), g.random((1, 1, H, W), dtype=np.float32)
    ha, hb = backend.from_host(a), backend.from_host(b)
    assert backend.dtype_and_shape(ha) == ("float32", (2, 1, H, W))
    both = backend.concat([ha, hb])
    np.testing.assert_array_equal(backend.to_host(both), np.concatenate([a, b]))
    np.testing.assert_array_equal(backend.to_host(backend.take(both, 1, 3)), np.concatenate([a, b])[1:3])
    assert backend.concat([ha]) is ha
    frame = g.integers(0, 256, (1, H, W, 3), dtype=np.uint8)
    hf = backend.from_host(frame)
    assert hf.nbytes == frame.nbytes == H * W * 3  # uint8 frames: one byte per pixel
    frame[:] = 0  # the caller may reuse its array at once
    assert backend.to_host(hf).any()
    with pytest.raises(InputError, match="differ beyond the object axis"):
        backend.concat([ha, backend.from_host(np.zeros((1, 1, H, W + 16), np.float32))])
    with pytest.raises(InputError, match="objects 2:5"):
        backend.take(both, 2, 5)


def test_inputs_are_checked_and_numpy_inputs_uploaded(backend):
    frame = {"frame": np.zeros((1, H, W, 3), np.uint8), "padding": np.zeros(4, np.int64)}
    out = backend.run("query_encoder", frame)  # numpy inputs are uploaded
    assert backend.dtype_and_shape(out["query"]) == ("float32", (1, N, C))
    with pytest.raises(InputError, match="input frame: got dtype float32, expected uint8"):
        backend.run("query_encoder", {**frame, "frame": np.zeros((1, H, W, 3), np.float32)})
    with pytest.raises(InputError, match=r"expected \('1\.\.3', 1, 32, 48\)"):
        backend.run("aggregate", {"prob": np.zeros((4, 1, H, W), np.float32)})
    with pytest.raises(InputError, match="takes DeviceTensor handles"):
        backend.dtype_and_shape([1, 2])


def test_closing_frees_everything_and_invalidates_handles(monkeypatch, cuda, folder):
    install_engines(monkeypatch, cuda, folder)
    backend = TensorRTBackend(folder, read_manifest(folder))
    with backend:
        handle = backend.from_host(np.ones((1, 1, H, W), np.float32))
        backend.run("aggregate", {"prob": handle})
    assert cuda.memory == {}
    with pytest.raises(BackendError, match="closed"):
        backend.to_host(handle)


@pytest.mark.parametrize("call, code, match", [
    ("cudaMalloc", 2, r"CUDA call cudaMalloc failed with cudaErrorMemoryAllocation \(2\): out of memory; out of "
                      "device memory"),
    ("cudaStreamCreateWithFlags", 100, r"cudaStreamCreateWithFlags failed with cudaErrorNoDevice \(100\).*"
                                       "NVIDIA GPU with a current driver"),
])
def test_failed_cuda_calls_are_named_and_nothing_leaks(monkeypatch, cuda, folder, call, code, match):
    install_engines(monkeypatch, cuda, folder)
    cuda.fail[call] = code
    with pytest.raises(BackendError, match=match), TensorRTBackend(folder, read_manifest(folder)):
        pass
    assert cuda.memory == {}


def test_a_failed_copy_is_named(backend, cuda):
    cuda.fail["cudaMemcpyAsync"] = 1
    with pytest.raises(BackendError, match=r"cudaMemcpyAsync failed with cudaErrorInvalidValue \(1\)"):
        backend.from_host(np.zeros(4, np.int64))


def test_tensorrt_refusing_a_shape_is_reported(backend, monkeypatch):
    ctx = backend._runners["aggregate"].context
    monkeypatch.setattr(ctx, "set_input_shape", lambda name, shape: False)
    with pytest.raises(BackendError, match=r"refused the shape \(2, 1, 32, 48\) of input prob .*1\.\.3 objects"):
        backend.run("aggregate", {"prob": np.zeros((2, 1, H, W), np.float32)})


def test_a_stale_engine_is_refused_with_the_rebuild_command(monkeypatch, cuda, folder):
    data = read_manifest(folder, verify=False)
    aggregate = data.graphs["aggregate"]
    other = {**data.graphs, "aggregate": dataclasses.replace(aggregate, outputs=aggregate.outputs[:2])}
    stale = EngineTensorRT(STAGES, dataclasses.replace(data, graphs=other), cuda)  # an engine without labels
    monkeypatch.setitem(sys.modules, "tensorrt", stale)
    with pytest.raises(BackendError, match=r"aggregate engine's tensors differ.*simvos-build .*--force"):
        TensorRTBackend(folder, read_manifest(folder)).open()
    assert cuda.memory == {}


def test_engines_for_another_gpu_are_refused(monkeypatch, cuda, folder):
    install_engines(monkeypatch, cuda, folder)
    props = types.SimpleNamespace(name=b"Tesla T4\0", major=7, minor=5)
    cuda._api["cudaGetDeviceProperties"] = lambda d: (props,)
    with pytest.raises(BackendError, match="built for NVIDIA A100-SXM4-80GB and this GPU is Tesla T4.*"
                                                       "simvos-build"):
        TensorRTBackend(folder, read_manifest(folder)).open()


def test_auto_picks_tensorrt_when_engines_are_here(monkeypatch, cuda, folder, caplog):
    install_engines(monkeypatch, cuda, folder)
    m = read_manifest(folder)
    backend = create_backend("auto", folder, m, threads=2, cuda_graphs=True)  # threads: ONNX Runtime's, dropped
    assert isinstance(backend, TensorRTBackend)
    data = json.loads((folder / MANIFEST).read_text())
    data["graphs"]["query_encoder"]["engine"] = None
    write_json_atomic(folder / MANIFEST, data)
    with caplog.at_level(logging.WARNING, logger="simvos_trt.runtime.backends"):
        assert create_backend("auto", folder, read_manifest(folder)).name == "onnxruntime"
    assert "has no engine for query_encoder; build them with: simvos-build" in caplog.text


@pytest.mark.skipif(gpu_missing() is None, reason="TensorRT and a GPU are here")
def test_auto_falls_back_to_onnxruntime_here_with_the_reason(small_export, caplog):
    m = read_manifest(small_export.folder)
    with caplog.at_level(logging.INFO, logger="simvos_trt.runtime.backends"):
        backend = create_backend("auto", small_export.folder, m, threads=1, cuda_graphs=True)
    assert backend.name == "onnxruntime"
    assert "not using TensorRT (" in caplog.text


@pytest.mark.skipif(gpu_missing() is None, reason="TensorRT and a GPU are here")
def test_tensorrt_here_says_what_to_install(small_export):
    m = read_manifest(small_export.folder)
    with pytest.raises((MissingDependencyError, BackendError)) as info:
        create_backend("tensorrt", small_export.folder, m)
    assert "NVIDIA GPU" in str(info.value)
    with pytest.raises((MissingDependencyError, BackendError), match="TensorRT backend"):
        VideoSegmenter.open(small_export.folder, "tensorrt")


def onnx_engines(monkeypatch, cuda: FakeCudart, source: Path, folder: Path,
                 change: Mapping[str, float] | None = None) -> Manifest:
    """A copy of ``source`` whose fake engines run its ONNX graphs (``change``: added to a graph's outputs)."""
    ort = pytest.importorskip("onnxruntime")
    shutil.copytree(source, folder)
    record_fake_engines(folder)
    manifest = read_manifest(folder)

    def session(graph: str) -> Compute:
        sess = ort.InferenceSession(str(folder / manifest.graphs[graph].file), providers=["CPUExecutionProvider"])
        names, delta = [o.name for o in sess.get_outputs()], (change or {}).get(graph, 0.0)
        return lambda x: {n: (v + delta).astype(v.dtype) for n, v in zip(names, sess.run(names, x), strict=True)}

    install_engines(monkeypatch, cuda, folder, {g: session(g) for g in manifest.graphs})
    return manifest


def test_fake_engines_over_the_onnx_graphs_match_onnx_runtime(monkeypatch, cuda, small_export, tmp_path):
    """The backend's plumbing with the real graphs: fake engines running the ONNX files through ONNX Runtime."""
    folder = tmp_path / "export"
    onnx_engines(monkeypatch, cuda, small_export.folder, folder)
    frames, mask = moving_video(5, *SMALL, objects=SMALL_MAX_OBJECTS)
    with VideoSegmenter.open(folder, "onnxruntime", threads=1) as ref:
        want = np.stack(list(ref.segment(frames, mask)))
    with VideoSegmenter.open(folder, "tensorrt") as seg:
        got = np.stack(list(seg.segment(frames, mask)))
    np.testing.assert_array_equal(got, want)


def test_fake_engines_on_a_live_video_match_onnx_runtime(monkeypatch, cuda, small_export, tmp_path):
    """Objects joining (decoded in a batch of their own on the next frame), corrected, removed and joining again:
    the device-side regrouping (take, concat) of the TensorRT backend gives what ONNX Runtime gives."""
    folder = tmp_path / "export"
    onnx_engines(monkeypatch, cuda, small_export.folder, folder)
    frames, mask = moving_video(7, *SMALL, objects=3)

    def only(t: int, i: int) -> np.ndarray:  # object i of the first mask, moved as the video moves it
        return np.where(np.roll(mask, t, axis=1) == i, i, 0).astype(np.uint8)

    masks = {0: only(0, 1), 2: only(2, 2), 3: only(3, 1), 5: only(5, 3)}

    def run(backend: str, **options: Any) -> list[np.ndarray]:
        with VideoSegmenter.open(folder, backend, **options) as seg:
            video = seg.video()
            out = [video.start(frames[0], masks[0])]
            for t in range(1, len(frames)):
                if t == 4:
                    video.remove_objects([2])
                out.append(video.step(frames[t], masks.get(t)))
            assert video.object_ids.tolist() == [1, 3]
        return out

    np.testing.assert_array_equal(np.stack(run("tensorrt")), np.stack(run("onnxruntime", threads=1)))


def test_verify_engines_and_label_agreement_with_fake_engines(monkeypatch, cuda, small_export, tmp_path):
    from simvos_trt.eval.engines import label_agreement, segment_labels, verify_engines

    folder = tmp_path / "export"
    onnx_engines(monkeypatch, cuda, small_export.folder, folder)
    report = verify_engines(folder)
    assert report.passed and len(report.checks) == 2 * 7  # 7 outputs at 1 and 2 objects
    assert {c.objects for c in report.checks} == {1, SMALL_MAX_OBJECTS}
    frames, mask = moving_video(4, *SMALL, objects=2)
    got = segment_labels(folder, frames, mask, "tensorrt")
    assert label_agreement(got, segment_labels(folder, frames, mask, "onnxruntime")).per_frame == (1.0,) * 4


def test_verification_names_an_engine_that_differs(monkeypatch, cuda, small_export, tmp_path):
    from simvos_trt.eval.engines import verify_engines

    onnx_engines(monkeypatch, cuda, small_export.folder, tmp_path / "export", {"joint_decoder_2mem": 0.3})
    report = verify_engines(tmp_path / "export", objects=[2])
    assert [c.name for c in report.checks if not c.passed] == ["joint_decoder_2mem.prob (2 objects)"]
    assert "worst: joint_decoder_2mem.prob (2 objects): max abs 0.3" in report.failure()


def test_resized_videos_are_resampled_on_the_device(monkeypatch, cuda, small_export, tmp_path):
    """A resized video through fake engines: the resample engine is built once for the frame size (the build
    faked: its engine runs the generated ONNX graph through ONNX Runtime); only uint8 labels come to the host."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    folder = tmp_path / "export"
    manifest = onnx_engines(monkeypatch, cuda, small_export.folder, folder)
    trt, built = sys.modules["tensorrt"], []
    dtypes = {"tensor(float)": "float32", "tensor(uint8)": "uint8"}

    def fake_build(model: bytes, profile, compute_capabilities=()):
        sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        entry = GraphEntry("resample.onnx", "", *(tuple(TensorSpec(t.name, dtypes[t.type], tuple(t.shape)) for t in ts)
                                                   for ts in (sess.get_inputs(), sess.get_outputs())))
        names = [t.name for t in entry.outputs]

        def compute(x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return dict(zip(names, sess.run(names, x), strict=True))

        built.append(FakeEngine(entry, manifest.max_objects, compute, cuda))
        return f"resample:{len(built) - 1}".encode(), {}

    class Runtime(trt.Runtime):
        def deserialize_cuda_engine(self, data: bytes) -> FakeEngine:
            text = data.decode()
            return built[int(text[9:])] if text.startswith("resample:") else super().deserialize_cuda_engine(data)

    monkeypatch.setattr(trt, "Runtime", Runtime)
    monkeypatch.setattr("simvos_trt.runtime.backends.trt.build_from_onnx", fake_build)
    frames, mask = moving_video(4, 2 * H + 3, 2 * W - 5, objects=2)
    with VideoSegmenter.open(folder, "onnxruntime", threads=1) as ref:
        want = list(ref.segment(frames, mask, return_prob=True))
    with VideoSegmenter.open(folder, "tensorrt") as seg:
        got = list(seg.segment(frames, mask, return_prob=True))
        downloads: list[str] = []
        real = seg.backend.to_host
        monkeypatch.setattr(seg.backend, "to_host", lambda h: downloads.append(h.dtype.name) or real(h))
        labels = list(seg.segment(frames, mask))
    assert len(built) == 1  # one engine for the size, reused by every frame and the second video
    assert downloads == ["uint8"] * 3  # the steps' labels: neither probabilities nor engine-size maps
    for (lab, prob), (ref_lab, ref_prob) in zip(got, want, strict=True):
        assert np.abs(prob - ref_prob).max() <= 1e-5 and (lab == ref_lab).mean() >= 0.999
    for lab, (ref_lab, _) in zip(labels, want, strict=True):
        assert (lab == ref_lab).mean() >= 0.999


# --------------------------------------------------------------------------- on a GPU


@pytest.mark.gpu
@pytest.mark.skipif(gpu_missing() is not None, reason=str(gpu_missing()))
@pytest.mark.parametrize("name", ["tiny_L0", "tiny_L4_tr", "tiny_L2_tr_odd"])
def test_golden_videos_tensorrt_vs_onnxruntime(name, golden_exports, tmp_path):
    """The golden videos through TensorRT engines and through ONNX Runtime on the same graphs: labels agree."""
    from goldens import load_golden

    from simvos_trt.export.trt_build import build_engines

    folder = tmp_path / name
    shutil.copytree(golden_exports[name].folder, folder)
    build_engines(folder, BuildSettings(workspace_mib=1024))
    case = load_golden(name)
    with VideoSegmenter.open(folder, "onnxruntime") as ref, VideoSegmenter.open(folder, "tensorrt") as seg:
        want = np.stack(list(ref.segment(case.frames, case.first_mask)))
        got = np.stack(list(seg.segment(case.frames, case.first_mask)))
        assert seg.backend.name == "tensorrt"
    assert np.mean(got == want) > 0.98, f"{name}: label agreement {np.mean(got == want):.4f}"
