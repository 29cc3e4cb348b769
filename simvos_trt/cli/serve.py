"""simvos-serve: serve video object segmentation on Triton Inference Server (HTTP, gRPC, Prometheus metrics,
health endpoints): model 'simvos', one sequence of requests per video (the wire protocol is in
simvos_trt/serve/README.md). Prints one line when ready; stops on SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from ..runtime.backends import AUTO, BACKENDS
from ..serve.launch import READY
from ..serve.protocol import GRPC_PORT, HTTP_PORT, LOOPBACK, METRICS_PORT
from ..serve.sessions import Limits
from .common import EXIT_OK, command_parser, flag, run_command

PROG = "simvos-serve"


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(PROG, __doc__)
    p.add_argument("--engine-dir", type=Path, required=True, metavar="DIR",
                   help="export folder written by simvos-export (manifest.json and the graphs)")
    p.add_argument("--backend", choices=(AUTO, *BACKENDS), default=AUTO,
                   help="auto: TensorRT when installed, on a GPU, with engines built for it; else ONNX Runtime")
    p.add_argument("--host", default=LOOPBACK, metavar="ADDRESS",
                   help="the address all three endpoints listen on: this machine only by default; 0.0.0.0 for "
                   "every interface (put a gateway for authentication and TLS in front: README, 'Serving in "
                   "production')")
    p.add_argument("--http-port", type=int, default=HTTP_PORT, help="Triton's HTTP/REST port")
    p.add_argument("--grpc-port", type=int, default=GRPC_PORT,
                   help="Triton's gRPC port, for simvos-segment --server and the Python client")
    p.add_argument("--metrics-port", type=int, default=METRICS_PORT, help="Prometheus metrics port")
    p.add_argument("--instances", type=int, default=1,
                   help="Triton model instances: requests of that many videos run at once")
    p.add_argument("--idle-timeout", type=float, default=Limits.idle_timeout, metavar="SECONDS",
                   help="close a video after this long without a request (a client gone)")
    p.add_argument("--max-videos", type=int, default=Limits.max_videos,
                   help="open videos at most; starting one more evicts the least recently used video idle for "
                   "--evict-after seconds, or is refused if none is (TensorRT's buffer pools are sized for it)")
    p.add_argument("--evict-after", type=float, default=Limits.evict_after, metavar="SECONDS",
                   help="at --max-videos, a video idle this long may be evicted for a new one")
    p.add_argument("--max-frame-pixels", type=int, default=Limits.max_frame_pixels, metavar="PIXELS",
                   help="refuse frames and masks of more pixels (H x W; the default is 8K UHD, 7680x4320)")
    p.add_argument("--max-response-bytes", type=int, default=Limits.max_response_bytes, metavar="BYTES",
                   help="refuse a request whose answer (labels, and probabilities with return_prob) would be "
                   "larger (default 256 MiB)")
    p.add_argument("--threads", type=int, default=None,
                   help="ONNX Runtime intra-op threads per graph (default: all cores)")
    p.add_argument("--triton-log", type=Path, default=None, metavar="FILE",
                   help="file for Triton's own log (default: triton.log in a new private folder under the "
                   "temporary directory, named in the ready line; README: why it is not printed)")
    flag(p, "-v", "--verbose", text="log every video opened and closed, and every refused request, on stderr")
    return p


def main(argv: list[str] | None = None) -> int:
    return run_command(PROG, build_parser().parse_args(argv), serve)


def serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM (their handlers set a stop event, restored afterwards)."""
    logging.getLogger("pytriton").setLevel(logging.ERROR)  # it logs a traceback per refused request
    from ..serve.server import SegmentationServer, ServeConfig

    stop = threading.Event()
    handlers = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        limits = Limits(max_videos=args.max_videos, idle_timeout=args.idle_timeout, evict_after=args.evict_after,
                        max_frame_pixels=args.max_frame_pixels, max_response_bytes=args.max_response_bytes)
        config = ServeConfig(args.engine_dir, backend=args.backend, host=args.host, http_port=args.http_port,
                             grpc_port=args.grpc_port, metrics_port=args.metrics_port, instances=args.instances,
                             limits=limits, triton_log=args.triton_log, threads=args.threads)
        with SegmentationServer(config) as server:
            print(f"{READY}: {server.summary_line()}; Triton log {server.triton_log}", flush=True)
            server.wait(stop)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    print(f"{PROG}: stopped", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
