"""simvos-build: build one strongly typed TensorRT engine per graph of an export folder (FP16 or FP32 as exported),
with TensorRT or TensorRT-RTX, reusing engines built with the same settings.

    simvos-build engines/BS-480x864                          # the graphs' precision (simvos-export --precision)
    simvos-build engines/BS-480x864 --library tensorrt_rtx --compute-capability 8.0 8.6
    simvos-build engines/BS-480x864 --graphs query_encoder aggregate --force

Exit codes: 0 done; 2 a bad folder, bad options or a failed build; 3 no TensorRT library (or, for TensorRT, no GPU)
here; 4 verification failed; 130 interrupted."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import DeviceUnavailableError, InputError, MissingDependencyError
from ..export.trt_build import BuildEvent, BuildStatus, build_engines
from ..trt.library import CHOICES
from ..trt.plan import BuildSettings, cc_text, parse_cc
from .common import EXIT_MISSING, EXIT_OK, add_output_options, command_parser, flag, progress_printer, run_command

EXIT_VERIFY = 4


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("simvos-build", __doc__)
    p.add_argument("folder", type=Path, metavar="DIR", help="export folder (with manifest.json)")
    p.add_argument("--library", choices=CHOICES, default="auto", help="auto: TensorRT (builds for the GPU here) "
                   "when installed, else TensorRT-RTX (ahead of time, for --compute-capability)")
    p.add_argument("--compute-capability", nargs="+", metavar="X.Y", type=parse_cc,
                   help="TensorRT-RTX only: the GPUs to run on, e.g. 8.0 (A100) 8.6 8.9 12.0, not 9.0 [default 8.0]")
    p.add_argument("--workspace", type=int, metavar="MiB", help="workspace limit (None: the device memory)")
    p.add_argument("--opt-level", type=int, choices=range(6), default=3, metavar="0..5",
                   help="builder optimisation level: higher builds slower, may run faster")
    flag(p, "--hardware-compatible", text="TensorRT only: engines for any Ampere or newer GPU (can be slower)")
    flag(p, "--version-compatible", text="TensorRT only: engines for later TensorRT versions too (slower, bigger)")
    p.add_argument("--graphs", nargs="+", metavar="NAME", help="build only these graphs [default: all]")
    flag(p, "--force", text="rebuild even engines whose cache key matches")
    p.add_argument("--device", type=int, default=0, help="CUDA device to build on (TensorRT) and verify on")
    flag(p, "--verify", default=None, text="compare each engine with its ONNX graph on ONNX Runtime; a mismatch "
         "exits 4 [default: when a GPU is here]")
    add_output_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_command("simvos-build", build_parser().parse_args(argv), run, missing_exit=EXIT_MISSING,
                       interrupted="interrupted; the engines finished so far are recorded in manifest.json")


def run(args: argparse.Namespace) -> int:
    """Validate the options, build (exit 3 without a library), verify where a GPU can, report."""
    try:
        settings = BuildSettings(tuple(args.compute_capability or ()), args.workspace, args.opt_level,
                                 args.hardware_compatible, args.version_compatible)
    except ValueError as exc:
        raise InputError(f"invalid options: {exc}") from exc
    say = progress_printer(quiet=args.json)
    t0 = time.perf_counter()

    def progress(event: BuildEvent) -> None:
        entry = event.entry
        what = f"{entry.plan.precision:<5} {entry.file}" if entry is not None else ""
        say(f"  {event.graph:<20} building ..." if event.status == BuildStatus.START else
            f"  {event.graph:<20} {event.status:<7} {event.seconds:7.1f} s {event.bytes / 1e6:8.1f} MB  {what}")

    say(f"simvos-build {args.folder}:")
    events = build_engines(args.folder, settings, library=args.library, graphs=args.graphs, force=args.force,
                           progress=progress, device=args.device)
    target = next(e.entry.target for e in events if e.entry is not None)
    verification = verify(args, say)
    if args.json:
        engines = [event_json(e) for e in events]
        settings_doc = {**asdict(settings), "compute_capabilities": [cc_text(c) for c in settings.compute_capabilities]}
        print(json.dumps({"folder": str(args.folder), "settings": settings_doc, "target": target.to_dict(),
                          "seconds": round(time.perf_counter() - t0, 3), "engines": engines,
                          "verification": verification.to_dict() if verification else None}, indent=1))
    else:
        built = sum(e.status == BuildStatus.BUILT for e in events)
        say(f"done in {time.perf_counter() - t0:.1f} s: {built} built, {len(events) - built} reused, "
            f"{target}; recorded in {args.folder / 'manifest.json'}")
    if verification is not None and not verification.passed:
        print(f"simvos-build: error: {verification.failure()}", file=sys.stderr)
        return EXIT_VERIFY
    return EXIT_OK


def event_json(event: BuildEvent) -> dict[str, Any]:
    """One engine of ``--json``: what happened, and the built engine's file, precision, layers and cache key."""
    entry = event.entry
    built: dict[str, Any] = {"file": None, "precision": None, "layers": None, "cache_key": None}
    if entry is not None:
        built = {"file": entry.file, "precision": entry.plan.precision, "layers": entry.layers,
                 "cache_key": entry.cache_key}
    return {"graph": event.graph, "status": event.status, "seconds": round(event.seconds, 3), "bytes": event.bytes,
            **built}


def verify(args: argparse.Namespace, say: Callable[[str], None]) -> Any:
    """The verification report, or None when it is off or (by default) no GPU is here to run the engines."""
    if args.verify is False:
        return None
    from ..eval.engines import verify_engines
    from ..trt.engine import device_here

    try:
        device_here(args.device)
    except (MissingDependencyError, DeviceUnavailableError) as exc:
        if args.verify:
            raise
        say(f"verification skipped: {exc}")
        return None
    say("verifying the engines against ONNX Runtime ...")
    report = verify_engines(args.folder, graphs=args.graphs, device=args.device)
    say(report.table())
    return report


if __name__ == "__main__":
    sys.exit(main())
