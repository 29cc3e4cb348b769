"""The host's ceiling: what the runtime's own host work allows per frame when the graphs cost nothing
(``NullBackend``): ``VideoSession.step`` alone, and simvos-segment's loop end to end (JPEG frames in, palette
PNGs out, ``segment_to_folder``), next to the floors of decoding (``cv2.imread``) and of writing a palette
PNG measured in the same run. The targets are the issue's (GPU goal: 75 FPS at 480p, 13 ms a frame)."""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..config import preset
from ..manifest import read_manifest
from ..runtime.backends.null import NullBackend
from ..runtime.png import write_index_png
from ..runtime.segmenter import VideoSegmenter
from ..runtime.video_io import FrameSource, read_frame, segment_to_folder
from ..tables import fmt, render
from .measure import moving_shapes
from .runner import GraphSpec, Progress, ensure_graphs

#: Inputs measured (H, W), and the targets at each: (step host ms at most, simvos-segment FPS at least).
TARGETS: dict[tuple[int, int], tuple[float, float]] = {(480, 854): (2.0, 120.0), (1080, 1920): (5.0, 35.0)}
#: Distinct JPEGs written per input (the frames cycle through them: decoding costs the same).
DISTINCT = 16


@dataclass(frozen=True)
class CeilingSettings:
    """A T export at ``engine`` size with ``objects`` objects; ``frames`` per pass after ``warmup``, the median of
    ``repeats`` passes."""

    engine: tuple[int, int] = (480, 864)
    objects: int = 2
    frames: int = 60
    warmup: int = 5
    repeats: int = 3
    engines: Path = Path("engines")
    seed: int = 1


@dataclass(frozen=True)
class CeilingRow:
    """Medians at one input size, in ms per frame (``segment_fps``: frames per second end to end)."""

    input: str
    step_ms: float
    step_p90_ms: float
    segment_ms: float
    segment_fps: float
    segment_cpu_ms: float  # CPU time of every thread per frame: what the loop costs whatever else runs
    imread_ms: float  # cv2.imread, the decode floor
    read_frame_ms: float  # runtime.video_io.read_frame (what simvos-segment decodes with)
    png_ms: float  # write_index_png of a mask of the video (the write floor)
    png_null_ms: float  # write_index_png of the null engine's all-background labels (what the loop writes)
    step_target_ms: float
    fps_target: float


def seconds_each(fn: Callable[[Any], object], items: list[Any]) -> list[float]:
    """Seconds of ``fn(item)`` for each of ``items`` (nothing else inside the clock)."""
    times = []
    for item in items:
        t0 = time.perf_counter()
        fn(item)
        times.append(time.perf_counter() - t0)
    return times


def per_item_ms(fn: Callable[[Any], object], items: list[Any]) -> float:
    """The median ms of ``fn(item)`` over ``items``."""
    return 1e3 * statistics.median(seconds_each(fn, items))


def write_clip(folder: Path, size: tuple[int, int], s: CeilingSettings) -> np.ndarray:
    """``warmup + frames`` JPEGs of moving shapes (detailed: textured and noisy) and ``mask.png``; the mask."""
    video = moving_shapes(*size, objects=s.objects, frames=min(DISTINCT, s.warmup + s.frames), seed=s.seed)
    folder.mkdir(parents=True)
    jpegs = [cv2.imencode(".jpg", f[:, :, ::-1])[1].tobytes() for f in video.frames]
    for i in range(s.warmup + s.frames):
        (folder / f"{i:05d}.jpg").write_bytes(jpegs[i % len(jpegs)])
    write_index_png(folder.parent / "mask.png", video.first_mask)
    return video.first_mask


def measure_input(export: Path, size: tuple[int, int], s: CeilingSettings, scratch: Path) -> CeilingRow:
    clip = scratch / f"{size[0]}x{size[1]}" / "frames"
    mask = write_clip(clip, size, s)
    files = sorted(clip.iterdir())
    distinct = [read_frame(f) for f in files[:DISTINCT]]  # (H, W, 3) uint8 BGR; the files cycle through them
    frames = [distinct[i % len(distinct)] for i in range(len(files))]
    steps, ends, cpu = [], [], []
    with VideoSegmenter(NullBackend(export, read_manifest(export))) as seg:
        for _ in range(s.repeats):
            session = seg.start(frames[0], mask, bgr=True)
            for f in frames[1 : 1 + s.warmup]:
                session.step(f)
            steps += [1e3 * t for t in seconds_each(session.step, frames[1 + s.warmup :])]
            out = scratch / "out"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            t0, c0 = time.perf_counter(), time.process_time()
            segment_to_folder(seg.video(), FrameSource(clip), {files[0].stem: mask}, out, None)
            ends.append((time.perf_counter() - t0) / len(files))
            cpu.append((time.process_time() - c0) / len(files))
    png = scratch / "floor.png"
    null_labels = np.zeros(size, np.uint8)
    return CeilingRow(f"{size[0]}x{size[1]}", statistics.median(steps), float(np.percentile(steps, 90)),
                      1e3 * statistics.median(ends), 1 / statistics.median(ends), 1e3 * statistics.median(cpu),
                      per_item_ms(lambda f: cv2.imread(str(f)), files), per_item_ms(read_frame, files),
                      per_item_ms(lambda m: write_index_png(png, m), [mask] * 20),
                      per_item_ms(lambda m: write_index_png(png, m), [null_labels] * 20), *TARGETS[size])


def measure_ceiling(s: CeilingSettings, say: Progress = lambda event: None) -> list[CeilingRow]:
    """Every input of ``TARGETS`` measured with a null engine over a T export at ``s.engine`` (exported first
    when ``s.engines`` has none)."""
    spec = GraphSpec(preset("T"), *s.engine, max_objects=s.objects, seed=s.seed)
    export = ensure_graphs(spec, s.engines, say)
    with tempfile.TemporaryDirectory(prefix="simvos-ceiling-") as scratch:
        return [measure_input(export, size, s, Path(scratch)) for size in TARGETS]


def ceiling_report(rows: list[CeilingRow], meta: dict[str, Any]) -> str:
    """The rows as a table (ms per frame, FPS, the targets met or missed) with the run's stamp."""

    def target(value: float, bound: float, at_most: bool) -> str:
        met = value <= bound if at_most else value >= bound
        return f"{'<=' if at_most else '>='} {bound:g} {'met' if met else 'MISSED'}"

    header = ["input", "step ms", "p90", "target", "segment ms", "CPU ms", "FPS", "target", "imread ms",
              "read_frame ms", "PNG ms", "null PNG ms"]
    body = [[r.input, fmt(r.step_ms, ".2f"), fmt(r.step_p90_ms, ".2f"), target(r.step_ms, r.step_target_ms, True),
             fmt(r.segment_ms, ".1f"), fmt(r.segment_cpu_ms, ".1f"), fmt(r.segment_fps, ".0f"),
             target(r.segment_fps, r.fps_target, False), fmt(r.imread_ms, ".1f"), fmt(r.read_frame_ms, ".1f"),
             fmt(r.png_ms, ".1f"), fmt(r.png_null_ms, ".1f")] for r in rows]
    s, host = meta["settings"], meta["host"]
    return "\n".join([
        f"host ceiling: null engine over a T export at {s['engine'][0]}x{s['engine'][1]}, {s['objects']} objects, "
        f"{s['frames']} frames after {s['warmup']} warm-up, median of {s['repeats']} passes",
        f"{host.get('cpu')} ({host.get('cores', {}).get('usable')} usable cores), {host.get('date')}; "
        f"command: {meta['command']}", "",
        render(header, body), "",
        "step: VideoSession.step's host work per frame; segment: simvos-segment's loop (JPEG in, palette PNG out, "
        "decoding and writing overlapped), wall and CPU time (all threads) per frame; load average "
        f"{meta['load']} at the start; floors: cv2.imread, read_frame, a palette PNG of the video's mask "
        "and of the null engine's all-background labels (what the loop writes)."])


def ceiling_record(rows: list[CeilingRow], meta: dict[str, Any]) -> dict[str, Any]:
    return {"format": "simvos-trt/host-ceiling/1", **meta, "rows": [asdict(r) for r in rows]}
