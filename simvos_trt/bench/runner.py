"""Run a sweep: for every row, prepare its graphs once, then measure it on every backend.

    settings = SweepSettings(height=128, width=224, backends=("onnxruntime", "torch"))
    writers = {b: ResultFolder(f"benchmarks/results/...-{b}", meta) for b in settings.backends}
    run_sweep(build_sweep([table_rows(2, "tiny", (128, 224))], "tiny"), settings, writers)

A backend that cannot run here (TensorRT without a GPU, FP16 on a CPU backend) gives
``unavailable`` rows with the reason and the other backends still run; an unexpected
error in one measurement gives a ``failed`` row and the sweep goes on. Every row is
written as soon as it is measured (``ResultFolder.put``), so an interrupted sweep keeps
the rows already measured; ``KeyboardInterrupt`` propagates.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BackendError, MissingDependencyError, SimVOSError
from .artifacts import GraphSpec, Progress, ensure_engines, ensure_graphs
from .costs import frame_costs
from .measure import Measurement, Video, measure_folder, moving_shapes
from .results import FAILED, UNAVAILABLE, ResultFolder, RowResult
from .sweep import SweepRow

log = logging.getLogger(__name__)

BACKEND_NAMES = ("onnxruntime", "torch", "tensorrt")

#: measure(folder, backend, video, warmup=, frames=, on_gpu=, **options) -> Measurement
Measure = Callable[..., Measurement]


@dataclass(frozen=True)
class SweepSettings:
    """How every row is measured.

    Attributes:
        height, width: the engine frame size (multiples of 16); the video has this size.
        objects: objects in the video (and the exports' object limit).
        frames, warmup: measured and warm-up steps per row.
        backends: backend names (``BACKEND_NAMES``).
        precision: ``fp32`` or ``fp16``: the graphs' precision (every backend runs the
            same graphs; TensorRT builds its engines from them).
        device: ``auto``, ``cpu`` or ``cuda`` for ONNX Runtime and torch (TensorRT is
            always cuda); ``auto`` picks cuda for a backend that can use the GPU here.
        engines: the folder holding the reusable exports (``<engines>/bench/...``).
        threads: ONNX Runtime intra-op threads (None: its default, every core).
        seed: seed of the random weights.
        repeats: passes over the whole sweep; each row keeps its fastest pass (by median).
    """

    height: int = 128
    width: int = 224
    objects: int = 2
    frames: int = 10
    warmup: int = 2
    backends: tuple[str, ...] = ("onnxruntime",)
    precision: str = "fp32"
    device: str = "auto"
    engines: Path = Path("engines")
    threads: int | None = None
    seed: int = 1
    repeats: int = 1

    def backend_options(self, backend: str) -> dict[str, Any]:
        """Options for ``create_backend``."""
        if backend == "onnxruntime":
            opts: dict[str, Any] = {"threads": self.threads}
            if self.device_of(backend) == "cpu":
                opts["providers"] = ["CPUExecutionProvider"]
            return opts
        if backend == "torch":
            return {"device": self.device_of(backend)}
        return {}

    def device_of(self, backend: str) -> str:
        """Where ``backend`` runs: TensorRT on ``cuda``; the others as asked, ``auto`` = cuda when they can."""
        if backend == "tensorrt":
            return "cuda"
        if self.device == "auto":
            return "cuda" if cuda_support(backend) is None else "cpu"
        return self.device


@functools.cache
def cuda_support(backend: str) -> str | None:
    """Why ``backend`` (onnxruntime or torch) cannot run on a CUDA GPU here, or None if it can."""
    from .hardware import gpu_name

    if importlib.util.find_spec(backend) is None:
        return f"{backend} is not installed"
    if gpu_name() is None:
        return "no usable NVIDIA GPU here"
    if backend == "onnxruntime":
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            return "onnxruntime has no CUDA provider (install onnxruntime-gpu)"
        return None
    import torch

    return None if torch.cuda.is_available() else "this torch build has no CUDA support"


def unavailable_reason(backend: str, settings: SweepSettings) -> str | None:
    """Why ``backend`` cannot be measured with ``settings`` here, or None if it can be tried."""
    from ..runtime.backends.trt import require_runtime

    if backend not in BACKEND_NAMES:
        return f"unknown backend {backend!r}; expected one of {BACKEND_NAMES}"
    if backend == "tensorrt":
        try:
            require_runtime()
        except (MissingDependencyError, BackendError) as exc:
            return str(exc)
        return None
    module, extra = ("onnxruntime", "") if backend == "onnxruntime" else ("torch", "[torch]")
    if importlib.util.find_spec(module) is None:
        return f"the {backend} backend needs {module}, which is not installed: pip install 'simvos-trt{extra}'"
    if settings.device == "cuda":
        reason = cuda_support(backend)
        if reason:
            return f"--device cuda: {reason}; use --device cpu"
    return None


def row_record(row: SweepRow, backend: str, settings: SweepSettings) -> RowResult:
    """The record of ``row`` on ``backend`` with its FLOPs and the paper's figures, not yet measured."""
    c, s = row.config, settings
    cost = frame_costs(c, s.height, s.width, s.objects)
    return RowResult(
        label=row.label, tables=";".join(map(str, row.tables)), config=c.name, backbone=c.backbone,
        layer_index=c.layer_index, token_refinement=c.token_refinement,
        kf=c.kf if c.token_refinement else None, kb=c.kb if c.token_refinement else None,
        backend=backend, precision=s.precision, device=s.device_of(backend),
        height=s.height, width=s.width, objects=s.objects, frames=s.frames, warmup=s.warmup,
        gflop=cost.total / 1e9, joint_gflop=cost.joint.total / 1e9, attention_gflop=cost.attention / 1e9,
        linear_gflop=cost.linear / 1e9, decoder_gflop=cost.decoder / 1e9,
        paper_label=row.paper.label if row.paper else None, paper_fps=row.paper.fps if row.paper else None)


def fill(record: RowResult, m: Measurement) -> RowResult:
    """``record`` with the measured figures of ``m``."""
    record.median_ms, record.p90_ms, record.mean_ms, record.fps = m.median_ms, m.p90_ms, m.mean_ms, m.fps
    record.query_ms, record.memory_ms, record.joint_ms = m.stage_ms("query"), m.stage_ms("memory"), m.stage_ms("joint")
    record.aggregate_ms, record.host_ms = m.stage_ms("aggregate"), m.stage_ms("host")
    record.peak_rss_mb, record.device_memory_mb = m.peak_rss_mb, m.device_memory_mb
    record.device, record.step_ms, record.pass_medians_ms = m.device, list(m.step), [m.median_ms]
    return record


def _mark(record: RowResult, status: str, message: str) -> RowResult:
    record.status, record.message = status, message
    return record


def run_sweep(rows: Sequence[SweepRow], settings: SweepSettings, writers: Mapping[str, ResultFolder], *,
              progress: Progress | None = None, measure: Measure = measure_folder,
              video: Video | None = None) -> None:
    """Measure every row on every backend of ``settings``, writing each result to ``writers[backend]``.

    With ``settings.repeats`` > 1 the whole sweep is run that many times (passes); a row
    keeps the pass with the lowest median step time (``ResultFolder.put``), and a row that
    was unavailable or failed in the first pass is not retried.

    Args:
        rows: the configurations (``sweep.build_sweep``).
        settings: size, objects, frames, backends, precision, repeats.
        writers: one result folder per backend.
        progress: called with (event, info): "pass" before each pass, "row" before a row,
            "graphs"/"graph"/"engine" while preparing it, "result" with {"row": RowResult}
            after each measurement.
        measure: the measuring function (``measure.measure_folder``; injectable for tests).
        video: the video to run (default: ``moving_shapes`` at the settings' size).
    """
    say = progress or (lambda event, info: None)
    s = settings
    video = video or moving_shapes(s.height, s.width, s.objects, 1 + s.warmup + s.frames, seed=s.seed)
    reasons: dict[tuple[int, str], str | None] = {}
    for b in s.backends:
        reason = unavailable_reason(b, s)
        if reason:
            log.info("backend %s unavailable: %s", b, reason)
        reasons.update({(i, b): reason for i in range(len(rows))})
    for n in range(s.repeats):
        say("pass", {"index": n, "count": s.repeats})
        for i, row in enumerate(rows):
            runnable = [b for b in s.backends if reasons[i, b] is None]
            if n > 0 and not runnable:
                continue
            say("row", {"index": i, "count": len(rows), "row": row})
            folder, export_error = None, ""
            if runnable:
                try:
                    spec = GraphSpec(row.config, s.height, s.width, s.objects, s.seed, precision=s.precision)
                    folder = ensure_graphs(spec, s.engines, say)
                except (SimVOSError, ImportError) as exc:
                    log.exception("exporting %s failed", row.config.name)
                    export_error = f"export failed: {exc}"
            for b in s.backends if n == 0 else runnable:
                record, reason = row_record(row, b, s), reasons[i, b]
                if reason is not None:
                    result = _mark(record, UNAVAILABLE, reason)
                elif folder is None:
                    result = _mark(record, FAILED, export_error)
                else:
                    result = _measure_one(record, folder, b, s, video, measure, say)
                if not result.ok:
                    reasons[i, b] = result.message
                writers[b].put(result)
                say("result", {"row": result, "pass": n})


def _measure_one(record: RowResult, folder: Path, backend: str, s: SweepSettings, video: Video,
                 measure: Measure, say: Progress) -> RowResult:
    try:
        if backend == "tensorrt":
            ensure_engines(folder, say)
        m = measure(folder, backend, video, warmup=s.warmup, frames=s.frames, on_gpu=s.device_of(backend) == "cuda",
                    **s.backend_options(backend))
    except (MissingDependencyError, BackendError) as exc:
        return _mark(record, UNAVAILABLE, str(exc))
    except (SimVOSError, RuntimeError, ValueError, TypeError, OSError, MemoryError) as exc:
        log.exception("measuring %s on %s failed", record.config, backend)
        return _mark(record, FAILED, f"{type(exc).__name__}: {exc}")
    return fill(record, m)
