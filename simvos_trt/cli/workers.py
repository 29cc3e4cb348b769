"""The worker options of the commands that segment many videos (simvos-eval, simvos-batch): where the videos
are segmented, and the pool that does it (simvos_trt.batch)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import TYPE_CHECKING

from .common import flag

if TYPE_CHECKING:
    from ..batch.cluster import RayPool
    from ..batch.pools import InProcess, Processes
    from ..batch.videos import SegmenterSpec

LOCAL_RAY = "local"


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    """``--workers``, ``--ray [ADDRESS]`` and ``--ship-export``: where the videos are segmented."""
    g = parser.add_argument_group("workers (many videos at once; each worker opens the export once)")
    g.add_argument("--workers", type=int, metavar="N", help="worker processes on this machine, each with "
                   "cores/N ONNX Runtime threads unless --threads [default: 1, this process]; with --ray, actors "
                   "on the cluster [default there: one per GPU, else one per --threads CPUs]")
    g.add_argument("--ray", nargs="?", const=LOCAL_RAY, metavar="ADDRESS", help="run the workers on a Ray cluster "
                   "(pip install 'simvos-trt[ray]'): its address (host:port, auto, ray://host:port), or none to start "
                   "one on this machine for the run; a worker whose process or node dies has its video redone by "
                   "another; every node must read the inputs at the same paths")
    flag(g, "--ship-export", default=None, text="with --ray: send the export folder to the workers through Ray's "
         "object store (no shared disk needed) instead of opening it by path on every node [default: on with an "
         "ADDRESS, off for a local cluster]")


def check_worker_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit 2 (argparse) on worker options that contradict each other."""
    if args.ship_export is not None and args.ray is None:
        parser.error("--ship-export needs --ray")
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers: got {args.workers}, expected at least 1")


def worker_pool(args: argparse.Namespace, spec: SegmenterSpec) -> InProcess | Processes | RayPool:
    """The pool the worker options ask for, over the export ``spec``, not started."""
    from ..batch.pools import InProcess, Processes, default_threads

    if args.ray is not None:
        from ..batch.cluster import RayPool

        address = None if args.ray == LOCAL_RAY else args.ray
        ship = args.ship_export if args.ship_export is not None else address is not None
        return RayPool(spec, address, args.workers, ship)
    if args.workers is not None and args.workers > 1:
        return Processes(replace(spec, threads=spec.threads or default_threads(args.workers)), args.workers)
    return InProcess(spec)
