"""simvos-bench: measure SimVOS's per-frame step over the paper's Table 2/3 configurations or a custom grid and
report FPS, speedups against the paper's and the FLOP model's, and a Figure 5 plot (examples:
simvos_trt/bench/README.md); each backend's results go to <results>/<date>-<host>-<backend>/, rewritten after every row.

Exit codes: 0 done; 1 some rows failed; 2 bad options; 3 no backend could run here; 130 interrupted."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from ..bench import runner
from ..bench.ceiling import CeilingSettings, ceiling_record, ceiling_report, measure_ceiling
from ..bench.costs import check_size
from ..bench.hardware import find_gpu_peak, gemm_peak, host_info
from ..bench.results import PLOT_FILE, ResultFolder, RowStatus, compare_folders, dated_name, format_report, plot_sweep
from ..bench.runner import SweepSettings, run_sweep, unavailable_reason
from ..bench.sweep import REFINEMENT_CHOICES, SweepRow, build_sweep, grid_rows, parse_ks, table_rows
from ..config import BACKBONES
from ..errors import InputError
from ..export.events import GraphExported
from ..export.trt_build import BuildEvent, BuildStatus
from ..io import ensure_writable, write_atomic, write_json_atomic
from ..manifest import Precision
from ..runtime.backends import BACKENDS
from .common import EXIT_INTERRUPTED, EXIT_MISSING, EXIT_OK, add_output_options, command_parser, flag, run_command

EXIT_FAILED = 1
DEFAULTS: dict[str, Any] = {"backbone": "tiny", "size": (128, 224), "backend": [["onnxruntime"]],
                            "precision": Precision.FP32, "frames": 10, "repeats": 1}
PAPER: dict[str, Any] = {"backbone": "base", "size": (480, 864), "backend": [["tensorrt"]],
                         "precision": Precision.FP16, "frames": 10, "repeats": 1}


def backend_list(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown backend {', '.join(unknown) or text!r}; choose from "
                                         f"{', '.join(BACKENDS)} (repeat the option or give a comma list)")
    return names


def size_arg(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not HxW (e.g. 128x224)")
    return int(m.group(1)), int(m.group(2))


def int_list(text: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma list of integers (e.g. 0,2,4)")
    return values


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("simvos-bench", __doc__)
    g = p.add_argument_group("what to sweep (default: --table 2)")
    g.add_argument("--table", type=int, choices=(2, 3), action="append",
                   help="the paper's Table 2 (L, with and without TR) or 3 (Kf/Kb at L=4); repeatable")
    g.add_argument("--layers", type=int_list, metavar="L,...", help="custom grid: layer indices, e.g. 0,2,4")
    g.add_argument("--k", default="384/384", metavar="KF/KB,...",
                   help="custom grid: token-refinement sizes in the paper's terms, e.g. 384/384,128/128")
    g.add_argument("--refinement", choices=REFINEMENT_CHOICES, default="both",
                   help="custom grid: rows without token refinement, with it, or both")
    g.add_argument("--backbone", choices=sorted(BACKBONES), default=None,
                   help="the ViT of the paper's ViT-B rows [default tiny; base with --paper]")
    flag(g, "--scale-k", default=True, text="scale Kf/Kb by the tokens per frame over the paper's 1620")
    flag(g, "--paper", text="the paper's setting: ViT-B/L at 480x864, 2 objects, TensorRT FP16 (explicit options win)")
    r = p.add_argument_group("how to run")
    r.add_argument("--backend", type=backend_list, action="append", metavar="NAME[,NAME]",
                   help="onnxruntime, torch, tensorrt; repeatable [default onnxruntime; tensorrt with --paper]")
    r.add_argument("--precision", type=Precision, choices=tuple(Precision), default=None,
                   help="fp16 needs TensorRT [default fp32; fp16 with --paper]")
    r.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where ONNX Runtime and torch run (auto: the GPU when they can use it)")
    r.add_argument("--size", type=size_arg, default=None, metavar="HxW",
                   help="frame size, multiples of 16 [default 128x224; 480x864 with --paper]")
    r.add_argument("--objects", type=positive, default=2, help="objects in the synthetic video")
    r.add_argument("--frames", type=positive, default=None, help="measured frames per row [default 10; "
                   f"{CeilingSettings.frames} per input with --host-ceiling]")
    r.add_argument("--warmup", type=int, default=2, help="warm-up frames per row")
    r.add_argument("--repeats", type=positive, default=None, help="passes over the sweep; each row keeps its "
                   f"fastest [default 1; with --host-ceiling {CeilingSettings.repeats} passes, their median]")
    r.add_argument("--threads", type=positive, default=None, help="ONNX Runtime intra-op threads [its default]")
    r.add_argument("--seed", type=int, default=1, help="seed of the random weights and of the video")
    flag(r, "--peak", default=True, text="measure the CPU's float32 GEMM peak (numpy, torch) first")
    o = p.add_argument_group("files")
    o.add_argument("--engines", type=Path, default=Path("engines"), help="where exports are kept and reused")
    o.add_argument("--results", type=Path, default=Path("benchmarks/results"), help="where result folders go")
    flag(o, "--host-ceiling", text="only measure the host's ceiling: the runtime's host ms per frame with a null "
         "engine (graphs answering at once) at 480x854 and 1920x1080 inputs, and simvos-segment end to end (JPEG "
         "in, PNG out), next to the decode and PNG-write floors, for a T export at --size [default 480x864]; "
         "results to <results>/<date>-<host>-host-ceiling/")
    o.add_argument("--compare", nargs=2, type=Path, metavar=("DIR1", "DIR2"),
                   help="only compare two result folders (FPS per configuration, ratio) and exit")
    add_output_options(o)
    return p


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the options left unset from --paper's setting or the defaults."""
    base = PAPER if args.paper else DEFAULTS
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.backend = list(dict.fromkeys(b for group in args.backend for b in group))  # flat, in order, unique
    if args.table is None and args.layers is None:
        args.table = [2]
    return args


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return run_command("simvos-bench", args, dispatch)


def dispatch(args: argparse.Namespace) -> int:
    """One of the three jobs: --compare, --host-ceiling, or a sweep."""
    if args.compare:
        return run_compare(*args.compare, as_json=args.json)
    if args.host_ceiling:
        return run_ceiling(args)
    return run(resolve(args))


def new_folder(results: Path, host: str, what: str) -> Path:
    """<results>/<date>-<host>-<what>, with -2, -3, ... when that exists already."""
    name = dated_name(host, what)
    folder, n = results / name, 2
    while folder.exists():
        folder, n = results / f"{name}-{n}", n + 1
    return folder


def run_ceiling(args: argparse.Namespace) -> int:
    """--host-ceiling: measure, print the report, write it with the JSON record to a new result folder."""
    settings = CeilingSettings(engine=args.size or CeilingSettings.engine, objects=args.objects,
                               frames=args.frames or CeilingSettings.frames, warmup=args.warmup,
                               repeats=args.repeats or CeilingSettings.repeats, engines=args.engines, seed=args.seed)
    ensure_writable(args.results, "--results")
    ensure_writable(args.engines, "--engines")
    check_size(*settings.engine, prefix=f"--size {settings.engine[0]}x{settings.engine[1]}: ")

    def say(event: Any) -> None:
        line = progress_line(event)
        if line is not None and not args.json:
            print(line, flush=True)

    load = " ".join(f"{x:.1f}" for x in os.getloadavg())  # other work on the machine slows every figure
    rows = measure_ceiling(settings, say)
    host = host_info()
    meta = {"host": host, "settings": {**dataclasses.asdict(settings), "engines": str(settings.engines)},
            "command": " ".join(["simvos-bench", *args.argv]), "load": load}
    folder = new_folder(args.results, host["host"], "host-ceiling")
    folder.mkdir(parents=True)
    record = ceiling_record(rows, meta)
    write_json_atomic(folder / "results.json", record)
    report = ceiling_report(rows, meta)
    write_atomic(folder / "report.txt", report + "\n")
    print(json.dumps(record, indent=1) if args.json else f"{report}\nwritten to {folder}/")
    return EXIT_OK


def run_compare(a: Path, b: Path, *, as_json: bool) -> int:
    text, pairs = compare_folders(a, b)
    if as_json:
        print(json.dumps([{**dataclasses.asdict(p), "ratio": p.ratio} for p in pairs], indent=1))
    else:
        print(text)
    return EXIT_OK


def sweep_rows(args: argparse.Namespace) -> list[SweepRow]:
    check_size(*args.size, prefix=f"--size {args.size[0]}x{args.size[1]}: ")
    groups = [table_rows(t, args.backbone, args.size, args.scale_k) for t in dict.fromkeys(args.table or [])]
    if args.layers is not None:
        groups.append(grid_rows(args.layers, parse_ks(args.k), args.refinement, args.backbone, args.size, args.scale_k))
    return build_sweep(groups, args.backbone)


def run(args: argparse.Namespace) -> int:
    if args.warmup < 0:
        raise InputError(f"--warmup {args.warmup}: expected 0 or more")
    rows = sweep_rows(args)
    ensure_writable(args.results, "--results")
    ensure_writable(args.engines, "--engines")

    def say_(text: str | None) -> None:
        if text is not None and not args.json:
            print(text, flush=True)

    settings = SweepSettings(height=args.size[0], width=args.size[1], objects=args.objects, frames=args.frames,
                             warmup=args.warmup, backends=tuple(args.backend), precision=args.precision,
                             device=args.device, engines=args.engines, threads=args.threads, seed=args.seed,
                             repeats=args.repeats)
    reasons = {b: unavailable_reason(b, settings) for b in args.backend}
    for backend, reason in reasons.items():
        if reason:
            print(f"simvos-bench: {backend} is not available here, its rows are skipped: {reason}", file=sys.stderr)
    backends = [b for b in args.backend if reasons[b] is None]
    if not backends:
        print("simvos-bench: error: none of the backends can run here; nothing was measured", file=sys.stderr)
        return EXIT_MISSING
    settings = dataclasses.replace(settings, backends=tuple(backends))
    say_(f"simvos-bench: {len(rows)} configurations x {len(backends)} backends ({', '.join(backends)}) at "
         f"{args.size[0]}x{args.size[1]}, {args.objects} objects, {args.frames} frames after {args.warmup} warm-up"
         + (f", best of {args.repeats} passes" if args.repeats > 1 else ""))
    host = host_info()
    peak = None
    if args.peak:
        say_("measuring the CPU's float32 GEMM peak ...")
        peak = gemm_peak()
        say_("  " + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in peak.gflops.items()))
    gpu_peak = find_gpu_peak(host["gpu"])
    writers = {}
    for backend in backends:
        meta = {"host": host, "settings": {**dataclasses.asdict(settings), "engines": str(settings.engines),
                                           "backends": list(settings.backends), "backend": backend,
                                           "tables": args.table, "layers": args.layers, "scale_k": args.scale_k,
                                           "backbone": args.backbone, "paper_mode": args.paper},
                "command": " ".join(["simvos-bench", *args.argv]),
                "cpu_gemm_peak": peak.to_dict() if peak else None,
                "gpu_peak": dataclasses.asdict(gpu_peak) if gpu_peak else None}
        writers[backend] = ResultFolder(new_folder(args.results, host["host"], backend), meta, gpu_peak)
    t0 = time.perf_counter()
    interrupted = False
    try:
        run_sweep(rows, settings, writers, progress=lambda event: say_(progress_line(event)))
    except KeyboardInterrupt:
        interrupted = True
    return finish(writers, args, time.perf_counter() - t0, interrupted)


def progress_line(event: Any) -> str | None:
    """The progress line of a sweep event (``bench.runner.Event``), or None."""
    match event:
        case runner.Started(index, count, None) if count > 1:
            return f"pass {index + 1}/{count}"
        case runner.Started(index, count, row) if row is not None:
            return f"[{index + 1}/{count}] {row.label} [{row.config.name}]"
        case runner.GraphsReady(folder, runner.GraphsStatus.EXPORTING):
            return f"    exporting graphs to {folder} ..."
        case runner.GraphsReady(folder, runner.GraphsStatus.EXPORTED, seconds):
            return f"    graphs exported: {folder} ({seconds:.1f} s)"
        case runner.GraphsReady(folder, status):
            return f"    graphs {status}: {folder}"
        case GraphExported(name=name, seconds=seconds, bytes=size):
            return f"      {name:<20} {seconds:6.1f} s  {size / 1e6:8.1f} MB"
        case BuildEvent(graph=graph, status=status, seconds=seconds) if status != BuildStatus.START:
            return f"    engine {graph}: {status} ({seconds:.1f} s)"
        case runner.RowMeasured(r) if r.ok:
            return (f"    {r.backend:<12} {r.fps:7.2f} FPS  median {r.median_ms:8.1f} ms  p90 {r.p90_ms:8.1f} ms  "
                    f"joint {r.joint_ms:8.1f} ms")
        case runner.RowMeasured(r):
            return f"    {r.backend:<12} {r.status}: {r.message}"
    return None


def finish(writers: dict[str, Any], args: argparse.Namespace, seconds: float, interrupted: bool) -> int:
    """Write each folder's report and plot, print them, and choose the exit code."""
    everything = [r for w in writers.values() for r in w.derived()]
    host = next(iter(writers.values())).meta["host"] if writers else {}
    title = (f"SimVOS {args.backbone} at {args.size[0]}x{args.size[1]}, {args.objects} objects; "
             f"{host.get('cpu')}, GPU {host.get('gpu') or 'none'}")
    out: dict[str, Any] = {}
    for backend, writer in writers.items():
        if not writer.rows:
            continue
        writer.flush()
        report = format_report(writer.meta, writer.derived())
        write_atomic(writer.folder / "report.txt", report + "\n")
        plot = plot_sweep(everything, writer.folder / PLOT_FILE, title)
        out[backend] = {"folder": str(writer.folder), "plot": str(plot) if plot else None,
                        "rows": [dataclasses.asdict(r) for r in writer.derived()]}
        if not args.json:
            print(f"\n{report}\nwritten to {writer.folder}/")
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"done in {seconds:.0f} s" + (" (interrupted: the rows measured so far are kept)" if interrupted else ""))
    if interrupted:
        return EXIT_INTERRUPTED
    if any(r.status == RowStatus.FAILED for r in everything):
        return EXIT_FAILED
    return EXIT_OK if any(r.ok for r in everything) else EXIT_MISSING


if __name__ == "__main__":
    sys.exit(main())
