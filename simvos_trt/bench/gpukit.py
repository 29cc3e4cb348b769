"""The GPU measurement kit (``benchmarks/gpu/run.sh``): a short GPU window turned into result files, in
phases within time budgets (stamp, golden videos, the paper's rows timed per mode and precision as whole
steps of the runtime's torch backend, report); ``DRY_PLAN`` runs the same on a CPU, tiny."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import SimVOSConfig, preset
from ..io import MANIFEST, write_atomic, write_json_atomic
from ..manifest import GRAPH_TENSORS, GraphEntry, Manifest, Precision, TensorSpec, Weights, tensor_shapes
from ..model import propagate, random_model, synthetic_state_dict
from ..model.checkpoint import load_official_state
from ..model.precision import to_fp16
from ..model.simvos import SimVOS
from ..precision import graph_precision, tensor_dtype
from ..runtime import VideoSegmenter
from .costs import frame_costs
from .hardware import find_gpu_peak, machine
from .measure import Measurement, SyntheticVideo, moving_shapes
from .results import PLOT_FILE, ResultFolder, RowResult, RowStatus, kit_report, plot_sweep
from .runner import OPSET, SweepSettings, fill, row_record
from .sweep import SweepRow, build_sweep, table_rows

log = logging.getLogger(__name__)

FP32_MAX_DIFF, FP16_MIN_AGREEMENT = 1e-4, 0.995
GOLDEN_RULE = f"fp32 max|dp| <= {FP32_MAX_DIFF}, FP16 labels >= {100 * FP16_MIN_AGREEMENT:g}% equal"
#: Timing mode -> the name of its rows' backend.
BACKEND = {"eager": "torch", "cudagraph": "torch-cudagraph", "compile": "torch-compile"}


@dataclass(frozen=True)
class KitPlan:
    """Sizes, frame counts and per-phase budgets (seconds) of one run; timing phases are ``<mode>-<precision>``."""

    height: int
    width: int
    objects: int
    backbone: str
    frames: int  # timed steps per row, at most
    minimum: int  # timed steps per row, at least (fewer once the phase's time is up)
    warmup: int  # untimed steady-state steps before timing (the one-memory first step comes before them)
    golden_frames: int | None  # frames of each golden video checked (None: all)
    compile_backend: str
    compile_guess_s: float  # what a first torch.compile is assumed to take, until one has been timed
    phases: tuple[tuple[str, float], ...]


GPU_PLAN = KitPlan(480, 864, 2, "base", frames=20, minimum=5, warmup=2, golden_frames=None, compile_backend="inductor",
                   compile_guess_s=60, phases=(("machine", 10), ("golden", 45), ("eager-fp16", 60), ("eager-fp32", 75),
                                               ("cudagraph-fp16", 40), ("compile-fp16", 200), ("cudagraph-fp32", 30),
                                               ("report", 20)))
DRY_PLAN = KitPlan(32, 48, 2, "tiny", frames=4, minimum=2, warmup=1, golden_frames=3, compile_backend="eager",
                   compile_guess_s=5, phases=(("machine", 5), ("golden", 40), ("eager-fp16", 10), ("eager-fp32", 6),
                                              ("cudagraph-fp16", 0), ("compile-fp16", 20), ("cudagraph-fp32", 0),
                                              ("report", 8)))


class PhaseStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    PARTIAL = "partial"  # some items did not fit the phase's budget (``Phase.skipped`` says which)
    SKIPPED = "skipped"  # the phase cannot run on this machine (``Phase.skipped`` says why)


@dataclass
class Phase:
    """One phase's record: budget, time used, what was done and what was skipped (with why)."""

    name: str
    budget_s: float
    end: float  # time.monotonic() by which the phase must be over
    status: PhaseStatus = PhaseStatus.PENDING
    used_s: float = 0.0
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def left(self) -> float:
        return self.end - time.monotonic()

    def fits(self, item: str, estimate_s: float) -> bool:
        """Whether ``item``, estimated at ``estimate_s``, fits in the time left; records the skip if not."""
        if estimate_s <= self.left():
            return True
        self.skipped.append(f"{item}: needs ~{estimate_s:.0f} s, {max(self.left(), 0):.0f} s left")
        return False


class Budget:
    """Phase i ends by start + the budgets of phases 0..i, so unused time rolls forward; the budgets
    are scaled down to fit ``seconds`` when they add up to more."""

    def __init__(self, phases: tuple[tuple[str, float], ...], seconds: float) -> None:
        t0, end = time.monotonic(), 0.0
        scale = min(1.0, seconds / sum(b for _, b in phases))
        self.phases: dict[str, Phase] = {}
        for name, budget in phases:
            end += budget * scale
            self.phases[name] = Phase(name, round(budget * scale, 1), t0 + end)

    @contextmanager
    def phase(self, name: str) -> Iterator[Phase]:
        ph, t0 = self.phases[name], time.monotonic()
        ph.status = PhaseStatus.RUNNING
        try:
            yield ph
        finally:
            ph.used_s = round(time.monotonic() - t0, 1)
            if ph.status == PhaseStatus.RUNNING:
                ph.status = PhaseStatus.PARTIAL if ph.skipped else PhaseStatus.DONE


def set_ieee_fp32() -> str:
    """Make float32 matrix products and convolutions IEEE float32 (no TF32, by the legacy flags that inductor
    reads: torch 2.9+'s ``fp32_precision`` makes reading them raise); returns the setting."""
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    return (f"TF32 off (allow_tf32: matmul {torch.backends.cuda.matmul.allow_tf32}, cuDNN "
            f"{torch.backends.cudnn.allow_tf32}; matmul precision {torch.get_float32_matmul_precision()})")


def load_golden(path: Path, frames: int | None = None) -> tuple[dict[str, Any], SimVOS, dict[str, np.ndarray]]:
    """A golden video of ``tests/data/golden``: its meta, its tiny float32 model with the golden checkpoint's
    recipe, and its arrays (``frames``, ``prob`` and ``labels`` cut to the first ``frames`` frames)."""
    meta = json.loads(path.read_text())
    with np.load(path.with_suffix(".npz")) as d:
        arrays = {k: d[k] if k == "first_mask" else d[k][:frames] for k in d.files}
    model = SimVOS(SimVOSConfig(backbone="tiny", layer_index=meta["layer_index"], kf=meta["kf"], kb=meta["kb"],
                                token_refinement=meta["token_refinement"], train_grid=tuple(meta["train_grid"])))
    load_official_state(model, synthetic_state_dict(preset("T"), seed=1), source="the golden checkpoint recipe")
    return meta, model, arrays


def golden_checks(folder: Path, device: torch.device, frames: int | None, ph: Phase) -> list[dict[str, Any]]:
    """Each golden video through ``propagate`` on ``device`` in float32 and FP16, against the official outputs."""
    out: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.json")):
        if not ph.fits(path.stem, float(np.mean([r["seconds"] for r in out])) if out else 0.0):
            continue
        t0 = time.monotonic()
        _, model, d = load_golden(path, frames)
        video, mask, prob, labels = d["frames"], d["first_mask"], d["prob"], d["labels"]
        p32 = propagate(model.eval().to(device), video, mask)
        p16 = propagate(to_fp16(model), video, mask)
        rec: dict[str, Any] = {"case": path.stem, "frames": len(video), "size": list(mask.shape),
               "fp32_max_abs_diff": float(np.abs(p32 - prob).max()),
               "fp32_label_agreement": float((p32.argmax(1) == labels).mean()),
               "fp16_max_abs_diff": float(np.abs(p16 - prob).max()),
               "fp16_label_agreement": float((p16.argmax(1) == labels).mean()),
               "fp16_finite": bool(np.isfinite(p16).all())}
        rec["passed"] = bool(rec["fp32_max_abs_diff"] <= FP32_MAX_DIFF and rec["fp16_finite"]
                             and rec["fp16_label_agreement"] >= FP16_MIN_AGREEMENT)
        rec["seconds"] = round(time.monotonic() - t0, 2)
        out.append(rec)
        ph.done.append(path.stem)
    return out


def paper_rows(plan: KitPlan) -> list[SweepRow]:
    """Tables 2 and 3 at the plan's size and backbone (K scaled to it), B first, then BS, then the tables' order."""
    size = (plan.height, plan.width)
    rows = build_sweep([table_rows(2, plan.backbone, size), table_rows(3, plan.backbone, size)], plan.backbone)
    first = {"B": 0, "BS": 1}

    def order(row: SweepRow) -> int:
        variant = row.paper.variant if row.paper else None
        return first.get(variant or "", len(first))

    return sorted(rows, key=order)  # stable: the tables' order after B and BS


def kit_manifest(config: SimVOSConfig, plan: KitPlan, precision: Precision) -> Manifest:
    """The manifest an export of ``config`` at the plan's size would write, without graph files (no file name,
    no sha256): what the runtime's torch backend reads; it runs the stage modules and never a graph file.
    (A test compares it with a real export's.)"""
    shapes = tensor_shapes(config, plan.height, plan.width, uint8_input=True)
    graphs: dict[str, GraphEntry] = {}
    for graph, (inputs, outputs) in GRAPH_TENSORS.items():
        p = graph_precision(graph, precision)
        inputs_spec = tuple(TensorSpec(n, tensor_dtype(n, p, uint8_input=True), shapes[n]) for n in inputs)
        outputs_spec = tuple(TensorSpec(n, tensor_dtype(n, p, uint8_input=True), shapes[n]) for n in outputs)
        graphs[graph] = GraphEntry("", "", inputs_spec, outputs_spec, precision=p)
    return Manifest(config, plan.height, plan.width, uint8_input=True, max_objects=plan.objects, opset=OPSET,
                    checkpoint=Weights("random", seed=1), graphs=graphs, precision=precision)


class Kit:
    """One run's state: the plan, the device, float32 models kept in host memory, the video, the result file."""

    def __init__(self, plan: KitPlan, device: torch.device, writer: ResultFolder) -> None:
        self.plan, self.device, self.writer = plan, device, writer
        self.models: dict[SimVOSConfig, SimVOS] = {}
        self.seconds: dict[str, float] = {}  # "build <backbone>" and "compile": the last such time
        self.video: SyntheticVideo = moving_shapes(plan.height, plan.width, plan.objects, frames=12, seed=1)

    def settings(self, precision: Precision) -> SweepSettings:
        p = self.plan
        return SweepSettings(height=p.height, width=p.width, objects=p.objects, frames=p.frames, warmup=p.warmup,
                             precision=precision, device=self.device.type)

    def estimate(self, row: SweepRow, mode: str, precision: Precision) -> float:
        """Seconds ``row`` should take: its model's build, compiling, warm-up and the minimum of timed steps."""
        gflop = frame_costs(row.config, self.plan.height, self.plan.width, self.plan.objects).total / 1e9
        done = [r for r in self.writer.rows if r.ok and r.median_ms and r.gflop]
        here = [r for r in done if r.backend == BACKEND[mode] and r.precision == precision]
        same = [r.median_ms for r in done if r.config == row.config.name and r.median_ms]
        ms = here[-1].median_ms / here[-1].gflop * gflop if here else min(same, default=0.0)  # type: ignore[operator]
        build = 0.0 if row.config in self.models else self.seconds.get(f"build {row.config.backbone}", 0.0)
        compiling = self.seconds.get("compile", self.plan.compile_guess_s) if mode == "compile" else 0.0
        return build + compiling + ms / 1000 * (2 + self.plan.warmup + self.plan.minimum)  # + start, first step

    def model(self, config: SimVOSConfig) -> SimVOS:
        if config not in self.models:
            t0 = time.monotonic()
            self.models[config] = random_model(config, seed=1)
            self.seconds[f"build {config.backbone}"] = time.monotonic() - t0
        return self.models[config]

    def measure(self, row: SweepRow, mode: str, precision: Precision, ph: Phase) -> None:
        """Time ``row`` in ``mode`` (eager, cudagraph, compile) as whole steps of the runtime's torch backend."""
        cuda, backend = self.device.type == "cuda", BACKEND[mode]
        compile_with = {"eager": None, "cudagraph": "cudagraphs", "compile": self.plan.compile_backend}[mode]
        try:
            if cuda:  # start a peak-memory window; the peak is read relative to what is allocated now
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated() if cuda else 0
            if compile_with is not None:
                torch._dynamo.reset()  # every row's stage modules share their classes' code: start clean
            with tempfile.TemporaryDirectory(prefix="simvos-kit-") as folder:
                write_json_atomic(Path(folder) / MANIFEST, kit_manifest(row.config, self.plan, precision).to_dict())
                model = copy.deepcopy(self.model(row.config)).to(self.device)  # the host copy stays float32
                with VideoSegmenter.open(folder, "torch", verify=False, model=model, compile=compile_with) as seg:
                    record = self.timed(row, backend, precision, seg, ph.end, base)
        except Exception as exc:  # a failed row (out of memory, a compiler error) must not end the window
            log.exception("%s %s %s failed", row.config.name, backend, precision)
            record = dataclasses.replace(row_record(row, backend, self.settings(precision)), status=RowStatus.FAILED,
                                         message=f"{type(exc).__name__}: {exc}"[:300])
        finally:
            if cuda:
                torch.cuda.empty_cache()
        self.writer.add(record)
        ph.done.append(row.config.name + ("" if record.ok else " (failed)"))

    def timed(self, row: SweepRow, backend: str, precision: Precision, seg: VideoSegmenter, until: float,
              base: int) -> RowResult:
        """Start a video, run its one-memory first step and the warm-up steps, then time whole steps."""
        p, frames = self.plan, self.video.frames
        session = seg.video()
        t0 = time.monotonic()
        session.start(frames[0], self.video.first_mask)
        for frame in frames[1 : 2 + p.warmup]:
            session.step(frame)
        if backend == BACKEND["compile"]:
            self.seconds["compile"] = time.monotonic() - t0
        steps: list[float] = []
        for i in range(p.frames):
            if i >= p.minimum and time.monotonic() > until:
                break
            t1 = time.perf_counter()
            session.step(frames[2 + i % (len(frames) - 2)])  # labels reach the host: the step ends synchronised
            steps.append(1000 * (time.perf_counter() - t1))
        memory = (torch.cuda.max_memory_allocated(self.device) - base) / 2**20 if self.device.type == "cuda" else None
        m = Measurement(tuple(steps), {}, p.warmup, device_memory_mb=memory, device=self.device.type)
        r = dataclasses.replace(fill(row_record(row, backend, self.settings(precision)), m), frames=len(steps))
        log.info("%s %s %s: median %.2f ms, p90 %.2f ms (%d steps)", row.config.name, backend, precision,
                 r.median_ms, r.p90_ms, len(steps))
        return r


def run_kit(out: Path, *, dry_run: bool, seconds: float, golden: Path) -> dict[str, Any]:
    """Run every phase within ``seconds``, writing results.json, results.csv and report.txt into ``out``
    after each phase and fps_vs_L.png at the end; returns the results' meta (stamp, golden, phases)."""
    plan = DRY_PLAN if dry_run else GPU_PLAN
    device = torch.device("cpu" if dry_run else "cuda")
    budget = Budget(plan.phases, seconds)
    settings = {k: getattr(plan, k) for k in ("height", "width", "objects", "frames", "warmup")}
    meta: dict[str, Any] = {"kit": {"dry_run": dry_run, "seconds": seconds, "plan": dataclasses.asdict(plan),
                                    "golden_rule": GOLDEN_RULE}, "golden": [],
                            "settings": {**settings, "precision": "fp32 and fp16", "weights": "random (seed 1)"}}
    with budget.phase("machine"):
        meta["kit"]["fp32"] = set_ieee_fp32()
        meta["host"] = machine(device)
    gpu_peak = find_gpu_peak(meta["host"].get("gpu")) if device.type == "cuda" else None
    meta["gpu_peak"] = dataclasses.asdict(gpu_peak) if gpu_peak else None
    writer = ResultFolder(out, meta, gpu_peak)
    kit = Kit(plan, device, writer)

    def save() -> None:
        phases = [{k: v for k, v in dataclasses.asdict(p).items() if k != "end"} for p in budget.phases.values()]
        meta["kit"].update(phases=phases, seconds_by_step=kit.seconds)
        writer.flush()
        write_atomic(out / "report.txt", kit_report(meta, writer.derived()))

    save()
    with budget.phase("golden") as ph:
        meta["golden"] = golden_checks(golden, device, plan.golden_frames, ph)
    save()
    for name, _ in plan.phases[2:-1]:
        mode, precision_name = name.split("-")
        precision = Precision(precision_name)
        with budget.phase(name) as ph:
            if mode == "cudagraph" and device.type != "cuda":
                ph.status = PhaseStatus.SKIPPED
                ph.skipped.append("CUDA graphs need a CUDA device")
            else:
                for row in paper_rows(plan):
                    if ph.fits(row.config.name, kit.estimate(row, mode, precision)):
                        kit.measure(row, mode, precision, ph)
        save()
    with budget.phase("report") as ph:
        shown = [dataclasses.replace(r, backend=f"{r.backend} {r.precision}") for r in writer.derived()]
        title = f"SimVOS, {meta['host'].get('gpu') or 'CPU (dry run)'}, {plan.height}x{plan.width}, {plan.objects} obj."
        if plot_sweep(shown, out / PLOT_FILE, title) is None:
            ph.skipped.append(f"{PLOT_FILE}: no row measured")
    save()
    return meta
