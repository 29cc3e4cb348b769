"""A backend that times every graph call of the backend it wraps.

    proxy = TimingBackend(create_backend("onnxruntime", folder, manifest))
    with VideoSegmenter(proxy) as seg:
        video = seg.start(frame0, mask0)
        proxy.reset()
        video.step(frame1)
        proxy.stage_seconds()      # {"query": ..., "memory": ..., "joint": ..., "aggregate": ...}

Everything is delegated; ``run`` is timed with the backend synchronised before each
clock read (the wrapped backend's ``synchronize()``: the TensorRT backend waits for its
stream, the torch backend on a CUDA device for the device; CPU backends are synchronous
and keep the base class's no-op, which the proxy skips), so a stage's time is its whole
execution, not its launch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from ..runtime.backends import Backend, Handle

log = logging.getLogger(__name__)

#: Graph name -> the stage its time is reported under.
GRAPH_STAGE: dict[str, str] = {
    "query_encoder": "query",
    "memory_encoder": "memory",
    "joint_decoder_1mem": "joint",
    "joint_decoder_2mem": "joint",
    "aggregate": "aggregate",
}
STAGES = ("query", "memory", "joint", "aggregate")


@dataclass(frozen=True)
class Call:
    """One timed ``run``: the graph and its wall time in seconds."""

    graph: str
    seconds: float


def synchronizer(backend: Backend) -> Callable[[], None] | None:
    """``backend.synchronize``, or None when it is the base class's no-op (a synchronous backend)."""
    sync = getattr(backend, "synchronize", None)
    if not callable(sync) or getattr(sync, "__func__", None) is Backend.synchronize:
        return None
    return cast(Callable[[], None], sync)


class TimingBackend(Backend):
    """Delegates to ``inner`` and records the wall time of each ``run``.

    Args:
        inner: the backend to time (opened by this proxy's ``open``).
        clock: seconds as a float (``time.perf_counter``; injectable for tests).
    """

    def __init__(self, inner: Backend, clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__(inner.folder, inner.manifest)
        self.inner = inner
        self.name = inner.name
        self.clock = clock
        self.calls: list[Call] = []
        self._sync: Callable[[], None] | None = None

    # ------------------------------------------------------------------ timing

    def sync(self) -> None:
        """Wait for the wrapped backend's device work (no-op for synchronous backends)."""
        if self._sync is not None:
            self._sync()

    def synchronize(self) -> None:
        """The wrapped backend's ``synchronize``."""
        self.inner.synchronize()

    def now(self) -> float:
        """The clock, read after synchronising."""
        self.sync()
        return self.clock()

    def reset(self) -> None:
        """Forget the calls recorded so far."""
        self.calls.clear()

    def stage_seconds(self) -> dict[str, float]:
        """Seconds per stage (``STAGES``) summed over the calls recorded since ``reset``."""
        totals = dict.fromkeys(STAGES, 0.0)
        for call in self.calls:
            totals[GRAPH_STAGE.get(call.graph, call.graph)] += call.seconds
        return totals

    def run(self, graph: str, inputs: Mapping[str, Handle]) -> dict[str, Handle]:
        """The wrapped ``run`` (which checks the inputs), timed between synchronised clock reads."""
        t0 = self.now()
        out = self.inner.run(graph, inputs)
        self.calls.append(Call(graph, self.now() - t0))
        return out

    # ------------------------------------------------------------------ delegation

    def _open(self) -> None:
        self.inner.open()
        self._sync = synchronizer(self.inner)

    def _close(self) -> None:
        self.inner.close()

    def _run(self, graph: str, inputs: Mapping[str, Handle]) -> dict[str, Handle]:
        raise AssertionError("TimingBackend.run delegates to the wrapped backend's run")

    def object_limit(self, graph: str) -> int:
        return self.inner.object_limit(graph)

    def concat(self, handles: Sequence[Handle]) -> Handle:
        return self.inner.concat(handles)

    def take(self, handle: Handle, start: int, stop: int) -> Handle:
        return self.inner.take(handle, start, stop)

    def to_host(self, handle: Handle) -> np.ndarray:
        return self.inner.to_host(handle)

    def from_host(self, array: np.ndarray) -> Handle:
        return self.inner.from_host(array)

    def dtype_and_shape(self, handle: Handle) -> tuple[str, tuple[int, ...]]:
        return self.inner.dtype_and_shape(handle)

    def __getattr__(self, name: str) -> Any:
        """Anything else the wrapped backend offers (``providers``, ...)."""
        if name == "inner":  # not yet set (during __init__)
            raise AttributeError(name)
        return getattr(self.inner, name)
