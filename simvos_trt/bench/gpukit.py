"""The GPU measurement kit (``benchmarks/gpu/run.sh``): a short GPU window turned into result files, in
phases within time budgets (stamp, golden videos, the paper's rows timed per mode and precision as whole
``TorchStream`` steps, report); ``DRY_PLAN`` runs the same on a CPU, tiny."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import SimVOSConfig, preset
from ..io import write_atomic
from ..model import propagate, random_model, synthetic_state_dict
from ..model.checkpoint import load_official_state
from ..model.layers import FrameInput
from ..model.precision import to_fp16
from ..model.simvos import SimVOS, soft_aggregate
from .costs import frame_costs
from .hardware import find_gpu_peak, machine
from .measure import Measurement, moving_shapes
from .results import FAILED, PLOT_FILE, ResultFolder, RowResult, kit_report, plot_sweep
from .runner import SweepSettings, fill, row_record
from .sweep import SweepRow, build_sweep, table_rows

log = logging.getLogger(__name__)
Tensors = tuple[torch.Tensor, torch.Tensor]

FP32_MAX_DIFF, FP16_MIN_AGREEMENT = 1e-4, 0.995
GOLDEN_RULE = f"fp32 max|dp| <= {FP32_MAX_DIFF}, FP16 labels >= {100 * FP16_MIN_AGREEMENT:g}% equal"
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


@dataclass
class Phase:
    """One phase's record: budget, time used, what was done and what was skipped (with why)."""

    name: str
    budget_s: float
    end: float  # time.monotonic() by which the phase must be over
    status: str = "pending"
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
        ph.status = "running"
        try:
            yield ph
        finally:
            ph.used_s = round(time.monotonic() - t0, 1)
            if ph.status == "running":
                ph.status = "done" if not ph.skipped else "partial"


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
    return sorted(rows, key=lambda r: {"B": 0, "BS": 1}.get(r.paper.variant or "" if r.paper else "", 2))


class Kit:
    """One run's state: the plan, the device, float32 models kept in host memory, the video, the result file."""

    def __init__(self, plan: KitPlan, device: torch.device, writer: ResultFolder) -> None:
        self.plan, self.device, self.writer = plan, device, writer
        self.models: dict[SimVOSConfig, SimVOS] = {}
        self.seconds: dict[str, float] = {}  # "build <backbone>" and "compile": the last such time
        self.wall_ms: dict[str, float] = {}  # median wall-clock step per row, a check on the CUDA events
        video = moving_shapes(plan.height, plan.width, plan.objects, frames=12, seed=1)
        self.frames, self.masks = video_tensors(video.frames, video.first_mask, plan.objects, device.type == "cuda")

    def settings(self, precision: str) -> SweepSettings:
        p = self.plan
        return SweepSettings(height=p.height, width=p.width, objects=p.objects, frames=p.frames, warmup=p.warmup,
                             precision=precision, device=self.device.type)

    def estimate(self, row: SweepRow, mode: str, precision: str) -> float:
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

    def measure(self, row: SweepRow, mode: str, precision: str, ph: Phase) -> None:
        """Time ``row`` in ``mode`` (eager, cudagraph, compile; on CUDA compile is also timed captured)."""
        cuda, p, backend = self.device.type == "cuda", self.plan, BACKEND[mode]
        records: list[RowResult] = []
        try:
            if cuda:  # start a peak-memory window; the peak is read relative to what is allocated now
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated() if cuda else 0
            model = copy.deepcopy(self.model(row.config)).to(self.device)
            stream = TorchStream(to_fp16(model) if precision == "fp16" else model, p.height, p.width, p.objects)
            stream.start(self.frames[0], self.masks)
            stream.first_step(self.frames[1])
            if mode == "compile":
                stream.use_compile(p.compile_backend)
            if mode == "cudagraph":
                stream.capture()
            t0 = time.monotonic()
            time_steps(stream, self.frames[2:], count=p.warmup, minimum=p.warmup, until=float("inf"))
            if mode == "compile":
                self.seconds["compile"] = time.monotonic() - t0
            records.append(self.timed(row, backend, precision, stream, ph.end, base))
            if mode == "compile" and cuda:
                backend = "torch-compile-cudagraph"
                stream.capture()
                records.append(self.timed(row, backend, precision, stream, ph.end, base))
        except Exception as exc:  # a failed row (out of memory, a compiler error) must not end the window
            log.exception("%s %s %s failed", row.config.name, backend, precision)
            records.append(dataclasses.replace(row_record(row, backend, self.settings(precision)),
                                               status=FAILED, message=f"{type(exc).__name__}: {exc}"[:300]))
        finally:
            stream = model = None  # type: ignore[assignment]
            if cuda:
                torch.cuda.empty_cache()
        for r in records:
            self.writer.add(r)
        ph.done.append(row.config.name + ("" if records[-1].ok else " (failed)"))

    def timed(self, row: SweepRow, backend: str, precision: str, stream: TorchStream, until: float,
              base: int) -> RowResult:
        p = self.plan
        steps, walls = time_steps(stream, self.frames[2:], count=p.frames, minimum=p.minimum, until=until)
        memory = (torch.cuda.max_memory_allocated(self.device) - base) / 2**20 if self.device.type == "cuda" else None
        m = Measurement(tuple(steps), {}, p.warmup, device_memory_mb=memory, device=self.device.type)
        r = dataclasses.replace(fill(row_record(row, backend, self.settings(precision)), m), frames=len(steps))
        self.wall_ms[f"{backend} {precision} {row.config.name}"] = round(float(np.median(walls)), 3)
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
        meta["kit"].update(phases=phases, wall_median_ms=kit.wall_ms, seconds_by_step=kit.seconds)
        writer.flush()
        write_atomic(out / "report.txt", kit_report(meta, writer.derived()))

    save()
    with budget.phase("golden") as ph:
        meta["golden"] = golden_checks(golden, device, plan.golden_frames, ph)
    save()
    for name, _ in plan.phases[2:-1]:
        mode, precision = name.split("-")
        with budget.phase(name) as ph:
            if mode == "cudagraph" and device.type != "cuda":
                ph.status = "skipped: CUDA graphs need a CUDA device"
            for row in paper_rows(plan) if ph.status == "running" else []:
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


class TorchStream:
    """The runtime's per-frame step (``VideoSession.step``, casts as ``model.propagate``) in PyTorch on fixed
    device buffers (``frame``, ``prev_frame``, ``prev_objects``, ``labels``), so it can be compiled or captured."""

    def __init__(self, model: SimVOS, height: int, width: int, objects: int) -> None:
        self.model = model
        self.device = model.patch_embed.proj.weight.device
        self.dtype = model.patch_embed.proj.weight.dtype  # float16 under precision.to_fp16
        self.grid = (height // 16, width // 16)
        with torch.no_grad():
            self.pos = model.position_embedding(self.grid)  # (1, N, C), fixed per size as in the graphs
        self.normalise = FrameInput(height, width).to(self.device)
        self.padding = torch.zeros(4, dtype=torch.int64, device=self.device)  # frames have the engine size
        self.frame = torch.zeros((1, height, width, 3), dtype=torch.uint8, device=self.device)
        self.prev_frame = torch.zeros_like(self.frame)
        self.prev_objects = torch.zeros((objects, 1, height, width), device=self.device)
        self.labels = torch.zeros((1, height, width), dtype=torch.uint8, device=self.device)
        self.memory_first = torch.empty(0, device=self.device)
        self.advance: Callable[..., Tensors] = self._advance
        self.run: Callable[[], None] = self.step  # or a CUDA graph's replay after ``capture``

    def _input(self, frame: torch.Tensor) -> torch.Tensor:
        # (1, 3, H, W); contiguous as propagate's frames: a permuted layout changes FP16 CPU convolutions' rounding
        return self.normalise(frame, self.padding).to(self.dtype).contiguous()

    def _memory(self, frame: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return self.model.encode_memory(self._input(frame), masks, self.pos)  # (B, M, C); masks float32

    def _decode(self, frame: torch.Tensor, memories: list[torch.Tensor]) -> Tensors:
        query = self.model.encode_query(self._input(frame), self.pos)  # (1, N, C)
        agg = soft_aggregate(self.model.decode(query, memories, self.grid).float())  # (B+1, 1, H, W) float32
        return torch.argmax(agg, dim=0).to(torch.uint8), agg[1:]

    def _advance(self, frame: torch.Tensor, prev_frame: torch.Tensor, prev_objects: torch.Tensor,
                 memory_first: torch.Tensor) -> Tensors:
        return self._decode(frame, [memory_first, self._memory(prev_frame, prev_objects)])

    @torch.inference_mode()
    def start(self, frame: torch.Tensor, masks: torch.Tensor) -> None:
        """Cache the first frame's memory: ``frame`` (1, H, W, 3) uint8, ``masks`` (B, 1, H, W) 0/1 float32."""
        self.memory_first = self._memory(frame.to(self.device), masks.to(self.device))

    @torch.inference_mode()
    def first_step(self, frame: torch.Tensor) -> None:
        """The first propagated frame, decoded against the first memory alone."""
        self.frame.copy_(frame)
        self._keep(*self._decode(self.frame, [self.memory_first]))

    @torch.inference_mode()
    def step(self) -> None:
        """Segment ``frame`` against [first, previous] memories; the state moves on by one frame."""
        self._keep(*self.advance(self.frame, self.prev_frame, self.prev_objects, self.memory_first))

    def _keep(self, labels: torch.Tensor, objects: torch.Tensor) -> None:
        self.labels.copy_(labels)
        self.prev_frame.copy_(self.frame)
        self.prev_objects.copy_(objects)

    def use_compile(self, backend: str = "inductor") -> None:
        """Run the step through ``torch.compile`` (compiled at the next step)."""
        torch._dynamo.reset()  # one code object serves every model: start each from a clean cache
        self.advance = torch.compile(self._advance, backend=backend, fullgraph=True)

    def capture(self, warmup: int = 2) -> None:
        """Record one step as a CUDA graph; ``run`` replays it (every step after this one is the replay)."""
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                self.step()
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.step()
        self.run = graph.replay


def time_steps(stream: TorchStream, frames: Sequence[torch.Tensor], *, count: int, minimum: int,
               until: float) -> tuple[list[float], list[float]]:
    """(step ms, wall ms) of up to ``count`` whole steps (at least ``minimum``; no new one after ``until``), each
    from the upload of one of ``frames`` to the labels on the host: CUDA events on a GPU, nothing synchronised
    inside a step; the wall clock on a CPU."""
    cuda = stream.device.type == "cuda"
    host = torch.empty(stream.labels.shape, dtype=torch.uint8, pin_memory=cuda)
    steps: list[float] = []
    walls: list[float] = []
    for i in range(count):
        if i >= minimum and time.monotonic() > until:
            break
        events = [torch.cuda.Event(enable_timing=True) for _ in range(2)] if cuda else []
        t0 = time.perf_counter()
        if events:
            events[0].record()
        stream.frame.copy_(frames[i % len(frames)], non_blocking=cuda)
        stream.run()
        host.copy_(stream.labels, non_blocking=cuda)
        if events:
            events[1].record()
            events[1].synchronize()
        walls.append(1000 * (time.perf_counter() - t0))
        steps.append(events[0].elapsed_time(events[1]) if events else walls[-1])
    return steps, walls


def video_tensors(frames: np.ndarray, first_mask: np.ndarray, objects: int,
                  pin: bool) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Host frames (1, H, W, 3) uint8 (pinned if ``pin``) and the first frame's (B, 1, H, W) one-hot masks."""
    tensors = [torch.from_numpy(np.ascontiguousarray(f))[None] for f in frames]
    masks = torch.from_numpy(np.stack([first_mask == i + 1 for i in range(objects)]).astype(np.float32))[:, None]
    return [t.pin_memory() for t in tensors] if pin else tensors, masks
