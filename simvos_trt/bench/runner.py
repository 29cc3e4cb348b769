"""Run a sweep: for every row, its export folder (reused when its graph key matches, see ``GraphSpec``)
and TensorRT engines prepared once, then the row measured on every backend and written at once; a backend
that cannot run gives ``unavailable`` rows, an error a ``failed`` row, and the sweep goes on."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from .. import __version__
from ..config import SimVOSConfig
from ..errors import DeviceUnavailableError, MissingDependencyError, SimVOSError
from ..manifest import ManifestError, Precision, Weights, read_manifest
from ..runtime.backends import BACKENDS
from ..runtime.backends import unavailable_reason as runtime_unavailable_reason
from .costs import frame_costs
from .measure import Measurement, SyntheticVideo, measure_folder, moving_shapes
from .results import ResultFolder, RowResult, RowStatus
from .sweep import SweepRow

if TYPE_CHECKING:
    from ..export.events import GraphExported
    from ..export.trt_build import BuildEvent

log = logging.getLogger(__name__)

OPSET = 17

#: measure(folder, backend, video, warmup=, frames=, on_gpu=, **options) -> Measurement
Measure = Callable[..., Measurement]


@dataclass(frozen=True)
class Started:
    """Row ``index`` of ``count`` is being prepared and measured; without ``row``, pass ``index`` of ``count``
    over the whole sweep begins."""

    index: int
    count: int
    row: SweepRow | None = None


class GraphsStatus(StrEnum):
    REUSED = "reused"  # an export of the same key was there
    EXPORTING = "exporting"
    EXPORTED = "exported"


@dataclass(frozen=True)
class GraphsReady:
    """A row's export folder and what became of it (``seconds``: the export's, once ``EXPORTED``)."""

    folder: str
    status: GraphsStatus
    seconds: float = 0.0


@dataclass(frozen=True)
class RowMeasured:
    """A row's result on one backend, in pass ``index``."""

    row: RowResult
    index: int


Event: TypeAlias = "Started | GraphsReady | GraphExported | BuildEvent | RowMeasured"
Progress = Callable[[Event], None]


@dataclass(frozen=True)
class GraphSpec:
    """What an export folder must hold: ``config`` at H x W with ``weights`` (default: random, ``seed``)."""

    config: SimVOSConfig
    height: int
    width: int
    max_objects: int
    seed: int = 1
    opset: int = OPSET
    uint8_input: bool = True
    precision: Precision = Precision.FP32
    weights: Weights | None = None

    def provenance(self) -> Weights:
        return self.weights or Weights("random", seed=self.seed)

    def key(self) -> tuple[Any, ...]:
        """The graph key compared with an existing folder's manifest (``reusable``)."""
        return (self.config, self.height, self.width, self.max_objects, self.opset, self.uint8_input,
                self.precision, __version__, self.provenance())

    def folder(self, engines: str | Path) -> Path:
        size = f"{self.height}x{self.width}"
        return Path(engines) / "bench" / f"{self.config.name}-{size}-b{self.max_objects}-{self.precision}"


def reusable(spec: GraphSpec, folder: Path) -> bool:
    """True if ``folder`` is an intact export (files present, sha256s match) with ``spec``'s key."""
    try:
        m = read_manifest(folder, verify=True)
    except ManifestError as exc:
        log.info("%s: not reusable (%s)", folder, exc)
        return False
    same = spec.key() == (m.config, m.height, m.width, m.max_objects, m.opset, m.uint8_input, m.precision,
                          m.versions.get("simvos_trt"), m.checkpoint)
    if not same:
        log.info("%s: graph key differs; exporting again", folder)
    return same


def ensure_graphs(spec: GraphSpec, engines: str | Path, say: Progress, folder: Path | None = None,
                  model: Callable[[], Any] | None = None) -> Path:
    """The export folder of ``spec`` (``folder``, else under ``engines``): reused if its key matches, else
    exported (atomically) from ``model()`` (default: the seeded random model)."""
    folder = folder or spec.folder(engines)
    if reusable(spec, folder):
        say(GraphsReady(str(folder), GraphsStatus.REUSED))
        return folder
    from ..export.onnx_export import ExportSettings, export_folder
    from ..model.checkpoint import random_model

    t0 = time.perf_counter()
    say(GraphsReady(str(folder), GraphsStatus.EXPORTING))
    settings = ExportSettings(spec.height, spec.width, spec.max_objects, spec.opset, spec.uint8_input,
                              spec.precision)
    export_folder(model() if model else random_model(spec.config, seed=spec.seed), folder, settings, force=True,
                  progress=say,
                  checkpoint=spec.provenance())
    say(GraphsReady(str(folder), GraphsStatus.EXPORTED, time.perf_counter() - t0))
    return folder


def ensure_engines(folder: Path, say: Progress, device: int = 0) -> None:
    """Build (or reuse, by ``build_engines``' cache key) the TensorRT engines of ``folder``; raises
    MissingDependencyError / BackendError without TensorRT or a GPU."""
    from ..export.trt_build import build_engines
    from ..trt.plan import BuildSettings

    build_engines(folder, BuildSettings(), device=device, progress=say)


@dataclass(frozen=True)
class SweepSettings:
    """How every row is measured (``simvos-bench``'s options of the same names; ``threads`` None: every core,
    ``repeats``: passes over the sweep, each row keeping its fastest)."""

    height: int = 128
    width: int = 224
    objects: int = 2
    frames: int = 10
    warmup: int = 2
    backends: tuple[str, ...] = ("onnxruntime",)
    precision: Precision = Precision.FP32
    device: str = "auto"
    engines: Path = Path("engines")
    threads: int | None = None
    seed: int = 1
    repeats: int = 1

    def backend_options(self, backend: str) -> dict[str, Any]:
        if backend == "onnxruntime":
            cpu = self.device_of(backend) == "cpu"
            return {"threads": self.threads, **({"providers": ["CPUExecutionProvider"]} if cpu else {})}
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

        cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
        return None if cuda else "onnxruntime has no CUDA provider (install onnxruntime-gpu)"
    import torch

    return None if torch.cuda.is_available() else "this torch build has no CUDA support"


def unavailable_reason(backend: str, settings: SweepSettings) -> str | None:
    """Why ``backend`` cannot be measured with ``settings`` here, or None if it can be tried."""
    if backend not in BACKENDS:
        return f"unknown backend {backend!r}; expected one of {BACKENDS}"
    reason = runtime_unavailable_reason(backend)
    if reason is not None or backend == "tensorrt":
        return reason
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
    return dataclasses.replace(record, **m.figures(), device=m.device, pass_medians_ms=[m.median_ms])


def run_sweep(rows: Sequence[SweepRow], settings: SweepSettings, writers: Mapping[str, ResultFolder], *,
              progress: Progress | None = None, measure: Measure = measure_folder,
              video: SyntheticVideo | None = None) -> None:
    """Measure every row on every backend of ``settings``, writing each result to ``writers[backend]``; with
    ``repeats`` > 1 a row keeps its fastest pass (``ResultFolder.put``) and one unavailable or failed is not retried."""
    say = progress or (lambda event: None)
    s = settings
    video = video or moving_shapes(s.height, s.width, s.objects, 1 + s.warmup + s.frames, seed=s.seed)
    reasons: dict[tuple[int, str], str | None] = {}
    for b in s.backends:
        reason = unavailable_reason(b, s)
        if reason:
            log.info("backend %s unavailable: %s", b, reason)
        reasons.update({(i, b): reason for i in range(len(rows))})
    for n in range(s.repeats):
        say(Started(n, s.repeats))
        for i, row in enumerate(rows):
            runnable = [b for b in s.backends if reasons[i, b] is None]
            if n > 0 and not runnable:
                continue
            say(Started(i, len(rows), row))
            folder, export_error = None, ""
            if runnable:
                try:
                    spec = GraphSpec(row.config, s.height, s.width, s.objects, s.seed, precision=s.precision)
                    folder = ensure_graphs(spec, s.engines, say)
                except (SimVOSError, ImportError) as exc:
                    log.exception("exporting %s failed", row.config.name)
                    export_error = f"export failed: {exc}"
            measured = s.backends if n == 0 else runnable  # a later pass retries no unavailable backend
            for b in measured:
                record, reason = row_record(row, b, s), reasons[i, b]
                if reason is not None:
                    result = dataclasses.replace(record, status=RowStatus.UNAVAILABLE, message=reason)
                elif folder is None:
                    result = dataclasses.replace(record, status=RowStatus.FAILED, message=export_error)
                else:
                    result = _measure_one(record, folder, b, s, video, measure, say)
                if not result.ok:
                    reasons[i, b] = result.message
                writers[b].put(result)
                say(RowMeasured(result, n))


def _measure_one(record: RowResult, folder: Path, backend: str, s: SweepSettings, video: SyntheticVideo,
                 measure: Measure, say: Progress) -> RowResult:
    try:
        if backend == "tensorrt":
            ensure_engines(folder, say)
        m = measure(folder, backend, video, warmup=s.warmup, frames=s.frames, on_gpu=s.device_of(backend) == "cuda",
                    **s.backend_options(backend))
    except (MissingDependencyError, DeviceUnavailableError) as exc:  # cannot run here; any other error failed
        return dataclasses.replace(record, status=RowStatus.UNAVAILABLE, message=str(exc))
    except (SimVOSError, RuntimeError, ValueError, TypeError, OSError, MemoryError) as exc:
        log.exception("measuring %s on %s failed", record.config, backend)
        return dataclasses.replace(record, status=RowStatus.FAILED, message=f"{type(exc).__name__}: {exc}")
    return fill(record, m)
