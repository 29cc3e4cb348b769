"""Device memory of the TensorRT backend: pooled buffers, reused once no live handle points into them
(the buffer lifetime rules: docs/runtime.md)."""

from __future__ import annotations

import ctypes
import gc
import logging
import weakref
from math import prod
from typing import Any

import numpy as np

from ...errors import BackendError
from ...trt.cuda import Cuda

log = logging.getLogger(__name__)


class DeviceBuffer:
    """One device allocation, busy while a live ``DeviceTensor`` (in ``users``) points into it (``host``, ``event``: an
    upload buffer's pinned staging buffer and event)."""

    def __init__(self, ptr: int, nbytes: int, label: str, host: int = 0, event: Any = None) -> None:
        self.ptr, self.nbytes, self.label, self.host, self.event = ptr, nbytes, label, host, event
        self.users: weakref.WeakSet[DeviceTensor] = weakref.WeakSet()


class DeviceTensor:
    """The TensorRT backend's handle: a tensor in device memory that keeps its buffer from reuse while it
    lives; valid while the backend is open."""

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
    """Device buffers of one kind (``size`` bytes each, or None: as asked), at most ``limit`` of them,
    each paired with a pinned host buffer and an event if ``pinned`` (uploads)."""

    def __init__(self, cuda: Cuda, label: str, size: int | None, limit: int, pinned: bool = False) -> None:
        self.cuda, self.label, self.size, self.limit, self.pinned = cuda, label, size, limit, pinned
        self.buffers: list[DeviceBuffer] = []

    def acquire(self, nbytes: int) -> DeviceBuffer:
        """The smallest free buffer of at least ``nbytes``; allocates one when every buffer is busy."""
        for attempt in range(2):
            free = [b for b in self.buffers if not b.users and b.nbytes >= nbytes]
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
