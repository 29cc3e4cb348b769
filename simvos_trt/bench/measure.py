"""Time the runtime's per-frame step (``VideoSession.step``) on a synthetic video: the headline pass times
whole steps with nothing inside them, the split pass times every graph call through ``TimingBackend``."""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from ..errors import InputError
from ..manifest import Graph
from ..runtime.backends import Backend, Handle
from .hardware import device_memory_mb

log = logging.getLogger(__name__)

#: Graph -> the stage its time is reported under.
GRAPH_STAGE: dict[str, str] = {Graph.QUERY_ENCODER: "query", Graph.MEMORY_ENCODER: "memory",
                               Graph.JOINT_DECODER_1MEM: "joint", Graph.JOINT_DECODER_2MEM: "joint",
                               Graph.AGGREGATE: "aggregate"}
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


class TimingBackend:
    """A backend wrapped to record the synchronised wall time of each ``run`` on ``clock`` (the split pass, never
    the headline timing); every other attribute is the wrapped backend's (``__getattr__``), which checks the
    inputs as always."""

    def __init__(self, inner: Backend, clock: Callable[[], float] = time.perf_counter) -> None:
        self.inner = inner
        self.clock = clock
        self.calls: list[Call] = []
        self._sync = synchronizer(inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __enter__(self) -> TimingBackend:
        self.inner.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.inner.close()

    def now(self) -> float:
        """The clock, read after waiting for the wrapped backend's device work."""
        if self._sync is not None:
            self._sync()
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
        """The wrapped ``run``, timed between synchronised clock reads."""
        t0 = self.now()
        out = self.inner.run(graph, inputs)
        self.calls.append(Call(graph, self.now() - t0))
        return out


@dataclass(frozen=True)
class SyntheticVideo:
    """A synthetic video: ``frames`` (T, H, W, 3) uint8 and the first frame's (H, W) uint8 index mask."""

    frames: np.ndarray
    first_mask: np.ndarray

    @property
    def objects(self) -> int:
        return int(self.first_mask.max())


def moving_shapes(height: int, width: int, objects: int = 2, frames: int = 12, seed: int = 0) -> SyntheticVideo:
    """Ellipses of distinct colours bouncing over a smooth textured background; every object (ids
    1..objects) keeps a visible core in the first mask."""
    if objects < 1 or objects > 255:
        raise InputError(f"objects: got {objects}, expected 1..255")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)  # (H, W)
    background = 110 + 40 * np.sin(xx[..., None] / 9.0 + np.arange(3)) * np.cos(yy[..., None] / 13.0)  # (H, W, 3)
    radius = np.array([max(3.0, width / 8), max(3.0, height / 6)], np.float32)  # (2,) x, y
    centre = rng.uniform(radius, np.array([width, height]) - radius, size=(objects, 2))  # (K, 2)
    speed = rng.uniform(-0.04, 0.04, size=(objects, 2)) * (width, height)  # (K, 2)
    colours = rng.uniform(30, 225, size=(objects, 3))  # (K, 3)
    video = np.empty((frames, height, width, 3), np.uint8)
    first_mask = np.zeros((height, width), np.uint8)
    for t in range(frames):
        image = background.copy()
        span = np.array([width, height]) - 2 * radius
        pos = radius + np.abs((centre + t * speed - radius + span) % (2 * span) - span)  # (K, 2), bouncing
        for k in range(objects):
            inside = ((xx - pos[k, 0]) / radius[0]) ** 2 + ((yy - pos[k, 1]) / radius[1]) ** 2 <= 1  # (H, W)
            image[inside] = colours[k]
            if t == 0:
                first_mask[inside] = k + 1
        video[t] = np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)
    for k in range(objects):  # an object fully hidden by later ones still gets its centre pixel
        if not (first_mask == k + 1).any():
            first_mask[int(centre[k, 1]), int(centre[k, 0])] = k + 1
    return SyntheticVideo(video, first_mask)


class PeakRSS:
    """Samples the process's resident set size (psutil) in a thread; ``peak_mb`` after exit (None without it)."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: Any = None

    def __enter__(self) -> PeakRSS:
        if importlib.util.find_spec("psutil") is None:
            log.warning("psutil is not installed: peak host memory is not measured (pip install psutil)")
            return self
        import psutil  # type: ignore[import-untyped,unused-ignore]

        self._process = psutil.Process()
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="peak-rss", daemon=True)
        self._thread.start()
        return self

    def sample(self) -> None:
        """Read the RSS now and keep the maximum."""
        if self._process is not None:
            rss = self._process.memory_info().rss / 2**20
            self.peak_mb = rss if self.peak_mb is None else max(self.peak_mb, rss)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()


@dataclass(frozen=True)
class Measurement:
    """Per-frame times (ms) and memory peaks: ``step`` from the headline pass (nothing inside a step timed),
    ``stages`` (each of ``STAGES``) and ``split_step`` from the split pass; ``host`` = split step - stages."""

    step: tuple[float, ...]
    stages: dict[str, tuple[float, ...]]
    warmup: int
    peak_rss_mb: float | None = None
    device_memory_mb: float | None = None
    device: str = "cpu"
    split_step: tuple[float, ...] = ()

    @property
    def host(self) -> tuple[float, ...]:
        if not self.stages:
            return ()
        return tuple(s - sum(self.stages[k][i] for k in STAGES) for i, s in enumerate(self.split_step or self.step))

    @property
    def median_ms(self) -> float:
        return float(np.median(self.step))

    @property
    def p90_ms(self) -> float:
        return float(np.percentile(self.step, 90))

    @property
    def fps(self) -> float:
        """Frames per second at the median step time."""
        return 1000.0 / self.median_ms

    def figures(self) -> dict[str, Any]:
        """Median, p90 and mean ms, FPS, ``<stage>_ms`` (``STAGES`` and host), memory peaks, ``step_ms``."""
        return {"median_ms": self.median_ms, "p90_ms": self.p90_ms, "mean_ms": float(np.mean(self.step)),
                "fps": self.fps, **{f"{k}_ms": self.stage_ms(k) for k in (*STAGES, "host")},
                "peak_rss_mb": self.peak_rss_mb, "device_memory_mb": self.device_memory_mb, "step_ms": list(self.step)}

    def stage_ms(self, stage: str) -> float | None:
        """Median per-frame time of ``stage`` (one of ``STAGES`` or ``host``); None without a split pass."""
        values = self.host if stage == "host" else self.stages.get(stage)
        return float(np.median(values)) if values else None


def timed_steps(backend: Backend, video: SyntheticVideo, warmup: int, frames: int, on_gpu: bool,
                proxy: TimingBackend | None = None) -> tuple[list[float], dict[str, list[float]], float | None]:
    """One pass over ``video`` on an opened ``backend``: (step ms, stage ms, device memory peak MiB); each step
    timed whole with one synchronisation at its end, or with ``proxy`` every graph call timed (the split pass)."""
    from ..runtime import VideoSession

    # the session calls only Backend's public methods, which the wrapper has
    session = VideoSession(cast(Backend, proxy) if proxy else backend)
    sync = synchronizer(backend)
    session.start(video.frames[0], video.first_mask)
    step: list[float] = []
    stages: dict[str, list[float]] = {k: [] for k in STAGES}
    peaks: list[float] = []  # device memory in use after each step, MiB
    for i, frame in enumerate(video.frames[1 : 1 + warmup + frames]):
        if proxy is not None:
            proxy.reset()
        t0 = time.perf_counter()
        session.step(frame)
        if sync is not None:
            sync()
        seconds = time.perf_counter() - t0
        used = device_memory_mb() if on_gpu else None
        peaks += [] if used is None else [used]
        if i >= warmup:
            step.append(1000 * seconds)
            for k, v in (proxy.stage_seconds() if proxy else {}).items():
                stages[k].append(1000 * v)
    return step, stages, max(peaks, default=None)


def measure_session(backend: Backend, video: SyntheticVideo, *, warmup: int, frames: int,
                    on_gpu: bool = False) -> Measurement:
    """Measure ``backend`` (unopened or opened) on ``video``: start, ``warmup`` untimed steps, ``frames`` timed
    steps; the headline pass, then the split pass over the same frames (``timed_steps``)."""
    if frames < 1 or warmup < 0:
        raise InputError(f"frames={frames}, warmup={warmup}: expected frames >= 1 and warmup >= 0")
    if len(video.frames) < 1 + warmup + frames:
        raise InputError(f"the video has {len(video.frames)} frames; 1 + warmup + frames = "
                         f"{1 + warmup + frames} are needed")
    proxy = TimingBackend(backend)
    with PeakRSS() as rss, proxy:
        step, _, peak = timed_steps(backend, video, warmup, frames, on_gpu)
        split_step, stages, split_peak = timed_steps(backend, video, warmup, frames, on_gpu, proxy)
    peaks = [p for p in (peak, split_peak) if p is not None]
    return Measurement(tuple(step), {k: tuple(v) for k, v in stages.items()}, warmup, rss.peak_mb,
                       max(peaks) if peaks else None, "cuda" if on_gpu else "cpu", tuple(split_step))


def measure_folder(folder: str | Path, backend: str, video: SyntheticVideo, *, warmup: int, frames: int,
                   on_gpu: bool = False, **options: Any) -> Measurement:
    """Open the export ``folder`` with ``backend`` (``options`` for ``create_backend``) and measure it."""
    from ..manifest import read_manifest
    from ..runtime.backends import create_backend

    inner = create_backend(backend, folder, read_manifest(folder, verify=False), **options)
    return measure_session(inner, video, warmup=warmup, frames=frames, on_gpu=on_gpu)
