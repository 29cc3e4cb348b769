"""simvos-build: TensorRT engines for an export folder, built on the GPU that will run them.

    simvos-build engines/BS-480x864                      # FP16 (LayerNorm, aggregation in FP32)
    simvos-build engines/BS-480x864 --precision fp32     # float32 reference engines
    simvos-build engines/BS-480x864 --graphs query_encoder aggregate --force

Engines whose recorded cache key matches are reused; ``--force`` rebuilds them. Each
engine is recorded in the folder's manifest.json as soon as it is written.

Exit codes: 0 done; 2 bad folder, options or a failed build; 3 TensorRT or an NVIDIA GPU
is missing here; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError, SimVOSError, describe_error
from ..export.engine_cache import BuildSettings, RuntimeInfo
from ..export.trt_build import BuildEvent, build_engines
from ..export.trt_env import GPUUnavailableError, runtime_info
from ..io import interrupt_on_sigterm
from ..manifest import read_manifest

EXIT_MISSING = 3
EXIT_VERIFY = 4


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="simvos-build",
        description="Build TensorRT engines (one per graph) for an export folder written by simvos-export, "
        "reusing the ones already built for this GPU and TensorRT with the same settings.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("folder", type=Path, metavar="DIR", help="export folder (with manifest.json)")
    p.add_argument("--precision", choices=("fp16", "fp32"), default="fp16",
                   help="fp16: FP16 with LayerNorm statistics and soft aggregation in float32; fp32: float32 "
                   "reference engines (TF32 off)")
    p.add_argument("--workspace", type=int, metavar="MiB", default=None,
                   help="TensorRT workspace limit in MiB (None: TensorRT's default, the device memory)")
    p.add_argument("--opt-level", type=int, choices=range(6), default=3, metavar="0..5",
                   help="builder optimisation level: higher builds slower, may run faster")
    p.add_argument("--hardware-compatible", action=argparse.BooleanOptionalAction, default=False,
                   help="AMPERE_PLUS engines that run on any Ampere or newer GPU; can be slower (48 KiB "
                   "shared memory limit, fewer tactics and fusions); build on an Ampere or newer GPU")
    p.add_argument("--version-compatible", action=argparse.BooleanOptionalAction, default=False,
                   help="engines that also run on later TensorRT versions; can be slower, bigger (they embed "
                   "the lean runtime)")
    p.add_argument("--graphs", nargs="+", metavar="NAME", help="build only these graphs [default: all]")
    p.add_argument("--force", action="store_true", help="rebuild even engines whose cache key matches")
    p.add_argument("--device", type=int, default=0, help="CUDA device to build on")
    p.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                   help="compare each engine with its ONNX graph on ONNX Runtime (CPU, float32) at 1 and the "
                   "maximum objects; a mismatch beyond the precision's tolerance exits 4")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    p.add_argument("-v", "--verbose", action="store_true", help="log library and TensorRT details")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    interrupt_on_sigterm()
    try:
        return run(args)
    except (MissingDependencyError, GPUUnavailableError) as exc:
        print(f"simvos-build: error: {exc}", file=sys.stderr)
        return EXIT_MISSING
    except (SimVOSError, OSError) as exc:
        print(f"simvos-build: error: {describe_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("simvos-build: interrupted; the engines finished so far are recorded in manifest.json",
              file=sys.stderr)
        return 130


def run(args: argparse.Namespace) -> int:
    """Validate the options, check TensorRT and the GPU (exit 3 without them), build, report."""
    try:
        settings = BuildSettings(precision=args.precision, workspace_mib=args.workspace,
                                 opt_level=args.opt_level, hardware_compatible=args.hardware_compatible,
                                 version_compatible=args.version_compatible)
    except ValueError as exc:
        raise SimVOSError(f"invalid options: {exc}") from exc

    def say(text: str) -> None:
        if not args.json:
            print(text, flush=True)

    t0 = time.perf_counter()
    read_manifest(args.folder, verify=False)  # a wrong folder is named before TensorRT is looked for
    info = runtime_info(args.device)
    say(f"simvos-build {args.folder}: {args.precision} engines with {info.describe()}")

    def progress(event: BuildEvent) -> None:
        if event.status == "start":
            say(f"  {event.graph:<20} building ...")
        else:
            say("  " + row(event))

    events = build_engines(args.folder, settings, graphs=args.graphs, force=args.force, progress=progress,
                           device=args.device)
    verification = None
    if args.verify:
        from ..export.trt_verify import verify_engines

        say("verifying the engines against ONNX Runtime ...")
        verification = verify_engines(args.folder, args.precision, graphs=args.graphs, device=args.device)
        say(verification.table())
    if args.json:
        doc = report(args.folder, settings, info, events, time.perf_counter() - t0)
        doc["verification"] = verification.to_dict() if verification else None
        print(json.dumps(doc, indent=1))
    else:
        built = sum(e.status == "built" for e in events)
        say(f"done in {time.perf_counter() - t0:.1f} s: {built} built, {len(events) - built} reused; "
            f"recorded in {args.folder / 'manifest.json'}")
    if verification is not None and not verification.passed:
        print(f"simvos-build: error: {verification.failure()}", file=sys.stderr)
        return EXIT_VERIFY
    return 0


def row(event: BuildEvent) -> str:
    """One table line for a finished engine."""
    entry = event.entry
    what = f"{entry.plan.compute:<22} {entry.file}" if entry is not None else ""
    return f"{event.graph:<20} {event.status:<7} {event.seconds:7.1f} s {event.bytes / 1e6:8.1f} MB  {what}"


def report(folder: Path, settings: BuildSettings, info: RuntimeInfo, events: list[BuildEvent],
           seconds: float) -> dict[str, Any]:
    """The --json document: settings, TensorRT and GPU, one record per engine."""
    return {"folder": str(folder), "settings": asdict(settings), "runtime": asdict(info),
            "seconds": round(seconds, 3),
            "engines": [{"graph": e.graph, "status": e.status, "seconds": round(e.seconds, 3),
                         "bytes": e.bytes, "file": e.entry.file if e.entry else None,
                         "compute": e.entry.plan.compute if e.entry else None,
                         "cache_key": e.entry.cache_key if e.entry else None} for e in events]}


if __name__ == "__main__":
    sys.exit(main())
