"""simvos-serve: serve video object segmentation on Triton Inference Server (HTTP, gRPC, Prometheus metrics,
health endpoints): model 'simvos', one sequence of requests per video (the wire protocol is in
simvos_trt/serve/README.md). Prints one line when ready; stops on SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
import threading
from pathlib import Path

from ..runtime.backends import AUTO, BACKENDS
from .common import EXIT_OK, command_parser, flag, run_command

PROG = "simvos-serve"


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(PROG, __doc__)
    p.add_argument("--engine-dir", type=Path, required=True, metavar="DIR",
                   help="export folder written by simvos-export (manifest.json and the graphs)")
    p.add_argument("--backend", choices=(AUTO, *BACKENDS), default=AUTO,
                   help="auto: TensorRT when installed, on a GPU, with engines built for it; else ONNX Runtime")
    p.add_argument("--http-port", type=int, default=8000, help="Triton's HTTP/REST port")
    p.add_argument("--grpc-port", type=int, default=8001,
                   help="Triton's gRPC port, for simvos-segment --server and the Python client")
    p.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port")
    p.add_argument("--instances", type=int, default=1,
                   help="Triton model instances: requests of that many videos run at once")
    p.add_argument("--idle-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="close a video after this long without a request (a client gone)")
    p.add_argument("--max-videos", type=int, default=64,
                   help="open videos at most; starting one more is refused until one ends")
    p.add_argument("--threads", type=int, default=None,
                   help="ONNX Runtime intra-op threads per graph (default: all cores)")
    p.add_argument("--triton-log", type=Path, default=None, metavar="FILE",
                   help="file for Triton's own log (default: a file in the temporary folder, named in the ready "
                   "line; PyTriton keeps in memory every line Triton prints on stdout, so it is not printed)")
    flag(p, "-v", "--verbose", text="log every video opened and closed, and every refused request, on stderr")
    return p


def main(argv: list[str] | None = None) -> int:
    return run_command(PROG, build_parser().parse_args(argv), serve)


def serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM (their handlers set a stop event, restored afterwards)."""
    logging.getLogger("pytriton").setLevel(logging.ERROR)  # it logs a traceback per refused request
    from ..serve.server import SegmentationServer, ServeConfig

    log_file = args.triton_log or Path(tempfile.gettempdir()) / f"{PROG}-{args.grpc_port}-triton.log"
    stop = threading.Event()
    handlers = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        config = ServeConfig(args.engine_dir, args.backend, args.http_port, args.grpc_port, args.metrics_port,
                             args.instances, args.idle_timeout, args.max_videos, log_file, args.threads)
        with SegmentationServer(config) as server:
            print(f"{PROG}: ready: {server.summary_line()}; Triton log {log_file}", flush=True)
            server.wait(stop)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    print(f"{PROG}: stopped", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
