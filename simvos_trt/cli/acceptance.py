"""simvos-acceptance: the GPU acceptance run in one command: FP16 engines of SimVOS-BS and -B verified against
ONNX Runtime, golden labels compared, throughput measured, a report written (steps: simvos_trt/bench/README.md).

Exit codes: 0 passed; 1 a check failed; 2 bad options or an error; 3 TensorRT, cuda-python, a GPU or torch missing."""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..bench.measure import STAGES, Measurement
from ..bench.results import dated_name
from ..bench.sweep import load_paper_tables
from ..errors import DeviceUnavailableError, MissingDependencyError, require
from ..eval.engines import Agreement, EngineReport
from ..io import Owner, claim_folder, write_atomic, write_json_atomic, write_owner
from ..tables import fmt, render
from .common import EXIT_MISSING, command_parser, flag, run_command

log = logging.getLogger(__name__)

PROG = "simvos-acceptance"
EXIT_FAILED = 1
VARIANTS = ("BS", "B")
#: Labels of the TensorRT FP16 runtime must agree with the float32 reference on this fraction of pixels.
MIN_AGREEMENT = 0.98
Say = Callable[[str], None]


@dataclass
class VariantResult:
    """One model: its export folder, its engines against ONNX Runtime, and its throughput."""

    variant: str
    weights: str  # the checkpoint's path, or "random (seed 1)"
    folder: str
    paper_fps: float | None
    build_seconds: float | None = None
    verification: EngineReport | None = None
    throughput: Measurement | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"variant": self.variant, "weights": self.weights, "folder": self.folder,
                               "paper_fps": self.paper_fps, "build_seconds": self.build_seconds}
        if self.verification is not None:
            out["verification"] = self.verification.to_dict()
        if self.throughput is not None:
            figures = self.throughput.figures()
            stages = {k: figures.pop(f"{k}_ms") for k in (*STAGES, "host")}
            out["throughput"] = {**figures, "stages_ms": stages}
        return out


@dataclass
class GoldenResult:
    """One golden video: TensorRT FP16 labels against its reference labels and against ONNX Runtime."""

    case: str
    size: tuple[int, int]
    engine_size: tuple[int, int]
    engines: EngineReport
    vs_reference: Agreement
    vs_onnxruntime: Agreement

    @property
    def passed(self) -> bool:
        return self.vs_reference.mean >= MIN_AGREEMENT and self.engines.passed

    def to_dict(self) -> dict[str, Any]:
        return {"case": self.case, "size": list(self.size), "engine_size": list(self.engine_size),
                "vs_reference": self.vs_reference.to_dict(), "vs_onnxruntime": self.vs_onnxruntime.to_dict(),
                "engines": {"passed": self.engines.passed, "failure": self.engines.failure()},
                "passed": self.passed}


@dataclass
class AcceptanceReport:
    """Everything the run found; ``to_dict`` is ``acceptance.json``, ``markdown`` its README. ``stamp`` is the
    machine (``environment``), ``settings`` the command's options, both written as they are."""

    stamp: dict[str, Any]
    settings: dict[str, Any]
    variants: list[VariantResult] = field(default_factory=list)
    golden: list[GoldenResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def failures(self) -> list[str]:
        out = []
        for v in self.variants:
            if v.verification is not None and not v.verification.passed:
                out.append(f"{v.variant}: {v.verification.failure()}")
        for g in self.golden:
            if g.vs_reference.mean < MIN_AGREEMENT:
                out.append(f"golden {g.case}: TensorRT labels agree with the reference on {g.vs_reference.mean:.4f} "
                           f"of the pixels (needs {MIN_AGREEMENT})")
        out += [f"golden {g.case}: {g.engines.failure()}" for g in self.golden if not g.engines.passed]
        return out

    @property
    def passed(self) -> bool:
        return not self.failures()

    def to_dict(self) -> dict[str, Any]:
        return {"format": "simvos-acceptance/1", "passed": self.passed, "failures": self.failures(),
                "stamp": self.stamp, "settings": self.settings, "variants": [v.to_dict() for v in self.variants],
                "golden": [g.to_dict() for g in self.golden], "notes": self.notes}

    def markdown(self) -> str:
        st, s = self.stamp, self.settings
        stamp_keys = ("gpu", "compute_capability", "nvidia_driver", "cuda_driver", "cuda_runtime", "tensorrt", "host",
                      "platform", "cpu", "date")
        lines = [f"# simvos-trt acceptance: {st.get('gpu')} ({st.get('date')})", "",
                 f"**{'PASSED' if self.passed else 'FAILED'}**", *(f"- {f}" for f in self.failures()), "",
                 render(["", ""], [[k, str(st.get(k))] for k in stamp_keys], markdown=True), "",
                 f"Engines at {s['height']}x{s['width']}, FP16, max {s['max_objects']} objects; throughput: "
                 f"{s['frames']} frames after {s['warmup']} warm-up, {s['objects']} objects, timed as whole steps "
                 "(the stage split in a separate pass).", "",
                 "## Throughput", "", self._throughput_table()]
        for v in self.variants:
            if v.verification is not None:
                lines += ["", f"## Engines of {v.variant} vs ONNX Runtime", "", v.verification.table(markdown=True)]
        if self.golden:
            lines += ["", "## Golden videos (TensorRT FP16 labels)", "", self._golden_table()]
        lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines).rstrip() + "\n"

    def _throughput_table(self) -> str:
        rows = []
        for v in self.variants:
            t = v.throughput
            figures = [fmt(t.median_ms, ".2f"), fmt(t.p90_ms, ".2f"), fmt(t.fps, ".2f")] if t else ["-"] * 3
            rows.append([v.variant, v.weights, *figures, fmt(v.paper_fps, ".2f")])
        return render(["variant", "weights", "median ms", "p90 ms", "FPS", "paper FPS (A100)"], rows, markdown=True)

    def _golden_table(self) -> str:
        def mean_and_min(a: Agreement) -> str:
            return f"{a.mean:.4f} / {a.lowest:.4f}"

        rows = [[g.case, str(len(g.vs_reference.per_frame)), mean_and_min(g.vs_reference),
                 mean_and_min(g.vs_onnxruntime), "ok" if g.passed else "FAILED"] for g in self.golden]
        return render(["case", "frames", "vs reference (mean / min)", "vs ONNX Runtime (mean / min)", "result"],
                      rows, markdown=True)


def write_report(folder: Path, report: AcceptanceReport) -> tuple[Path, Path]:
    """Write ``acceptance.json`` and ``README.md`` into ``folder`` (atomically); returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / "acceptance.json", folder / "README.md"
    write_json_atomic(json_path, report.to_dict())
    write_atomic(md_path, report.markdown())
    return json_path, md_path


def environment(device: int) -> dict[str, Any]:
    """The stamp: GPU, driver, CUDA, TensorRT, host; raises MissingDependencyError / DeviceUnavailableError."""
    from ..bench.hardware import host_info, nvidia_driver
    from ..runtime.backends.trt import require_runtime
    from ..trt.cuda import Cuda

    info = require_runtime(device)
    require("torch", "torch", "Exporting the acceptance models")
    cuda = Cuda()

    def version(n: int) -> str:
        return f"{n // 1000}.{n % 1000 // 10}"

    return {**host_info(), "gpu": info.gpu_name, "compute_capability": ".".join(map(str, info.compute_capability)),
            "tensorrt": f"{info.library} {info.version}",
            "cuda_driver": version(int(cuda.call("cudaDriverGetVersion"))),
            "cuda_runtime": version(int(cuda.call("cudaRuntimeGetVersion"))), "nvidia_driver": nvidia_driver()}


def export(config: Any, folder: Path, height: int, width: int, max_objects: int, checkpoint: Path | None,
           golden: Any = None) -> Path:
    """Export ``config`` (weights: ``checkpoint``, else the ``golden`` model, else seeded random) to ``folder``
    as FP16; an export of the same model and settings already there is reused (and so are its engines)."""
    from ..bench.runner import GraphSpec, ensure_graphs
    from ..manifest import Precision, Weights
    from ..model.checkpoint import load_official_checkpoint

    weights: Weights | None = None
    model: Callable[[], Any] | None = None
    if checkpoint is not None:
        weights = Weights.from_file("official", checkpoint)
        model = functools.partial(load_official_checkpoint, checkpoint, config)
    elif golden is not None:
        weights = Weights("golden")
        model = lambda: golden  # noqa: E731 - the export's weights are this model's
    spec = GraphSpec(config, height, width, max_objects, precision=Precision.FP16, weights=weights)
    return ensure_graphs(spec, folder.parent, lambda event: log.info("%s", event), folder, model)


def build_and_verify(result: VariantResult, device: int, say: Say, objects: Sequence[int] | None = None) -> None:
    """Build the engines of ``result.folder`` (reusing matching ones) and verify them against ONNX Runtime."""
    from ..bench.runner import ensure_engines
    from ..eval.engines import verify_engines

    t0 = time.perf_counter()
    ensure_engines(Path(result.folder), lambda event: None, device)
    say(f"  engines built in {time.perf_counter() - t0:.0f} s; verifying against ONNX Runtime (CPU) ...")
    result.verification = verify_engines(result.folder, objects=objects, device=device)
    result.build_seconds = round(time.perf_counter() - t0, 1)
    say(result.verification.table())


def throughput(folder: Path, args: argparse.Namespace) -> Measurement:
    from ..bench.measure import measure_folder, moving_shapes

    video = moving_shapes(args.height, args.video_width, objects=args.objects, frames=1 + args.warmup + args.frames)
    return measure_folder(folder, "tensorrt", video, warmup=args.warmup, frames=args.frames, on_gpu=True,
                          device=args.device, cuda_graphs=args.cuda_graphs)


def golden_case(path: Path, engines: Path, device: int, say: Say) -> GoldenResult:
    """One golden video: TensorRT FP16 labels vs its reference labels and vs ONNX Runtime (float32)."""
    from ..bench.gpukit import load_golden
    from ..bench.runner import ensure_engines
    from ..eval.engines import label_agreement, segment_labels, verify_engines

    meta, model, d = load_golden(path)
    frames, first_mask, labels = d["frames"], d["first_mask"], d["labels"]
    H, W = meta["padded_size"]
    folder = export(model.config, engines / f"golden-{path.stem}", H, W, max(4, int(first_mask.max())), None, model)
    ensure_engines(folder, lambda event: None, device)
    checked = verify_engines(folder, device=device)
    got = segment_labels(folder, frames, first_mask, "tensorrt", device=device)  # run once, compared twice
    onnxruntime = segment_labels(folder, frames, first_mask, "onnxruntime")
    result = GoldenResult(path.stem, size=(int(frames.shape[1]), int(frames.shape[2])), engine_size=(H, W),
                          engines=checked, vs_reference=label_agreement(got, labels),
                          vs_onnxruntime=label_agreement(got, onnxruntime))
    say(f"  golden {path.stem}: {result.vs_reference.mean:.4f} of the pixels as the reference, "
        f"{result.vs_onnxruntime.mean:.4f} as ONNX Runtime")
    return result


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(PROG, __doc__)
    p.add_argument("--checkpoint-bs", type=Path, help="official SimVOS-BS checkpoint [default: random weights]")
    p.add_argument("--checkpoint-b", type=Path, help="official SimVOS-B checkpoint [default: random weights]")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), help="the models to accept")
    p.add_argument("--height", type=int, default=480, help="engine height")
    p.add_argument("--width", type=int, default=864, help="engine width")
    p.add_argument("--video-width", type=int, default=854, help="throughput video width (DAVIS 854x480)")
    p.add_argument("--max-objects", type=int, default=8, help="object-batch profile maximum")
    p.add_argument("--objects", type=int, default=2, help="objects in the throughput video")
    p.add_argument("--frames", type=int, default=100, help="measured frames")
    p.add_argument("--warmup", type=int, default=10, help="frames run before measuring")
    p.add_argument("--verify-objects", type=int, nargs="+", metavar="N",
                   help="object counts at which engines are compared with ONNX Runtime [default: 1 and --max-objects]")
    flag(p, "--cuda-graphs", text="replay each engine as a CUDA graph in the throughput run")
    p.add_argument("--golden", type=Path, default=Path("tests/data/golden"), help="golden videos (skipped if absent)")
    p.add_argument("--engines", type=Path, default=Path("engines/acceptance"), help="export folders and engines")
    p.add_argument("--out", type=Path, help="report folder [default: benchmarks/results/<date>-<host>-acceptance]")
    p.add_argument("--device", type=int, default=0, help="CUDA device")
    flag(p, "-v", "--verbose", text="log library and TensorRT details")
    return p


def main(argv: list[str] | None = None) -> int:
    return run_command(PROG, build_parser().parse_args(argv), run, missing_exit=EXIT_MISSING,
                       interrupted="interrupted; the report holds the steps finished so far")


def run(args: argparse.Namespace) -> int:
    from ..config import preset

    say = functools.partial(print, flush=True)
    try:
        stamp = environment(args.device)  # before anything is written
    except (MissingDependencyError, DeviceUnavailableError) as exc:
        print(f"{PROG}: the acceptance run needs TensorRT, cuda-python, an NVIDIA GPU and torch: {exc}",
              file=sys.stderr)
        return EXIT_MISSING
    out = args.out or Path("benchmarks/results") / dated_name(stamp["host"], "acceptance")
    claim_folder(out, Owner(PROG), inputs=[args.golden, args.checkpoint_bs, args.checkpoint_b])
    write_owner(out, Owner(PROG))
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "verbose"}
    report = AcceptanceReport(stamp, settings)
    say(f"{PROG}: {stamp['gpu']}, TensorRT {stamp['tensorrt']}, CUDA {stamp['cuda_runtime']}; report in {out}")
    paper = {r.variant: r.fps for r in load_paper_tables().rows if r.variant}
    for name in args.variants:
        checkpoint = args.checkpoint_bs if name == "BS" else args.checkpoint_b
        say(f"{name}: exporting at {args.height}x{args.width} ({'checkpoint' if checkpoint else 'random weights'}) ...")
        folder = export(preset(name), args.engines / f"{name}-{args.height}x{args.width}", args.height, args.width,
                        args.max_objects, checkpoint)
        result = VariantResult(name, str(checkpoint) if checkpoint else "random (seed 1)", str(folder),
                               paper_fps=paper.get(name))
        report.variants.append(result)
        build_and_verify(result, args.device, say, args.verify_objects)
        write_report(out, report)
        say(f"{name}: throughput, {args.frames} frames with {args.objects} objects ...")
        t = result.throughput = throughput(folder, args)
        say(f"  median {t.median_ms:.2f} ms, p90 {t.p90_ms:.2f} ms, {t.fps:.1f} FPS")
        write_report(out, report)
    cases = sorted(args.golden.glob("*.json")) if args.golden.is_dir() else []
    if not cases:
        report.notes.append(f"no golden videos in {args.golden}: that check was skipped")
    for path in cases:
        report.golden.append(golden_case(path, args.engines, args.device, say))
        write_report(out, report)
    report.notes.append("Random weights measure speed and TensorRT-vs-reference agreement, not segmentation quality.")
    json_path, md_path = write_report(out, report)
    say(f"{'PASSED' if report.passed else 'FAILED'}: {json_path}, {md_path}")
    for failure in report.failures():
        say(f"  {failure}")
    return 0 if report.passed else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
