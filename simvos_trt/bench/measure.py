"""Measure the runtime's per-frame step on a synthetic video: latency, stage split, memory.

    video = moving_shapes(128, 224, objects=2, frames=13)
    m = measure_folder("engines/bench/tiny-L4-128x224-b2", "onnxruntime", video, warmup=2, frames=10)
    m.median_ms, m.p90_ms, m.fps, m.stage_ms("joint")

One measured frame is one ``VideoSession.step``: the deferred memory encoding of the
previous frame, the query encoder, the joint decoder(s), soft aggregation and the host
work around them (staging the frame, chunking, bringing the labels back). The first
frame (``start``) and ``warmup`` steps are not measured; the first step is the only one
with a single memory, so with ``warmup >= 1`` every measured step is in steady state.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from ..errors import InputError
from .hardware import device_memory_mb
from .proxy import STAGES, TimingBackend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Video:
    """A synthetic video: ``frames`` (T, H, W, 3) uint8 and the first frame's (H, W) uint8 index mask."""

    frames: np.ndarray
    first_mask: np.ndarray

    @property
    def objects(self) -> int:
        return int(self.first_mask.max())


def moving_shapes(height: int, width: int, objects: int = 2, frames: int = 12, seed: int = 0) -> Video:
    """Ellipses of distinct colours bouncing over a smooth textured background.

    Every object is visible in every frame (later objects are drawn over earlier ones,
    but each keeps a core no other object covers in the first mask: ids 1..objects).
    """
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
    return Video(video, first_mask)


class PeakRSS:
    """Samples the process's resident set size (psutil) in a thread; ``peak_mb`` after exit.

    Without psutil ``peak_mb`` stays None (logged once).
    """

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

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()


@dataclass(frozen=True)
class Measurement:
    """Per-frame times (milliseconds) of the measured steps, and memory peaks.

    ``stages`` maps each of ``STAGES`` to its per-frame times; ``host`` is step time
    minus the stages, per frame.
    """

    step: tuple[float, ...]
    stages: dict[str, tuple[float, ...]]
    warmup: int
    peak_rss_mb: float | None = None
    device_memory_mb: float | None = None
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def host(self) -> tuple[float, ...]:
        return tuple(s - sum(self.stages[k][i] for k in STAGES) for i, s in enumerate(self.step))

    @property
    def median_ms(self) -> float:
        return float(np.median(self.step))

    @property
    def p90_ms(self) -> float:
        return float(np.percentile(self.step, 90))

    @property
    def mean_ms(self) -> float:
        return float(np.mean(self.step))

    @property
    def fps(self) -> float:
        """Frames per second at the median step time."""
        return 1000.0 / self.median_ms

    def stage_ms(self, stage: str) -> float:
        """Median per-frame time of ``stage`` (one of ``STAGES`` or ``host``)."""
        values = self.host if stage == "host" else self.stages[stage]
        return float(np.median(values))


def measure_session(proxy: TimingBackend, video: Video, *, warmup: int, frames: int,
                    on_gpu: bool = False) -> Measurement:
    """Run ``video`` through a segmenter over ``proxy``: start, ``warmup`` steps, ``frames`` timed steps.

    Args:
        proxy: the timing proxy around an (unopened or opened) backend.
        video: at least ``1 + warmup + frames`` frames.
        on_gpu: sample the device memory in use after every step.
    """
    from ..runtime import VideoSegmenter

    if frames < 1 or warmup < 0:
        raise InputError(f"frames={frames}, warmup={warmup}: expected frames >= 1 and warmup >= 0")
    if len(video.frames) < 1 + warmup + frames:
        raise InputError(f"the video has {len(video.frames)} frames; 1 + warmup + frames = "
                         f"{1 + warmup + frames} are needed")
    step: list[float] = []
    stages: dict[str, list[float]] = {k: [] for k in STAGES}
    device_peak: float | None = None
    with PeakRSS() as rss, VideoSegmenter(proxy) as seg:
        session = seg.start(video.frames[0], video.first_mask)
        for i, frame in enumerate(video.frames[1 : 1 + warmup + frames]):
            proxy.reset()
            t0 = proxy.now()
            session.step(frame)
            seconds = proxy.now() - t0
            used = device_memory_mb() if on_gpu else None
            if used is not None:
                device_peak = used if device_peak is None else max(device_peak, used)
            if i < warmup:
                continue
            step.append(1000 * seconds)
            for k, v in proxy.stage_seconds().items():
                stages[k].append(1000 * v)
    return Measurement(tuple(step), {k: tuple(v) for k, v in stages.items()}, warmup, rss.peak_mb, device_peak,
                       "cuda" if on_gpu else "cpu")


def measure_folder(folder: str | Path, backend: str, video: Video, *, warmup: int, frames: int,
                   on_gpu: bool = False, **options: Any) -> Measurement:
    """Open the export ``folder`` with ``backend`` (``options`` for ``create_backend``) and measure it."""
    from ..manifest import read_manifest
    from ..runtime.backends import create_backend

    folder = Path(folder)
    inner = create_backend(backend, folder, read_manifest(folder, verify=False), **options)
    return measure_session(TimingBackend(inner), video, warmup=warmup, frames=frames, on_gpu=on_gpu)
