"""What the C++ client costs per frame against the Python client: simvos-segment-cpp and simvos-segment --server
on the same server and the same 480x854 video, run in turns.

    cmake -S . -B build && cmake --build build                            # README, "C++"
    export SIMVOS_SERVE_PYTHON=$PWD/.venv-serve/bin/python                 # the server's venv (README)
    .venv/bin/python benchmarks/cpp_client.py --runs 5 --frames 30

The server (one instance, ONNX Runtime, 1 thread) serves a tiny export (ViT-tiny, L=1, no token refinement,
32x48, random weights), so that the model's work is small next to what is measured: each 480x854 frame goes
to the server whole (1.2 MB) and is resized there. Each tool reports its own ms per propagated frame, the
``step`` round trip (reading frames and writing PNGs are outside it); Triton's Prometheus metrics give the
server's own time per request over the same run (``nv_inference_request_duration_us`` over
``nv_inference_request_success``; PyTriton restricts the statistics API). Prints one line per run and the
medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import cv2

from simvos_trt.bench.measure import moving_shapes
from simvos_trt.config import SimVOSConfig
from simvos_trt.export.onnx_export import ExportSettings, export_folder
from simvos_trt.manifest import Weights
from simvos_trt.model import random_model
from simvos_trt.runtime.png import write_index_png
from simvos_trt.serve import ServerProcess
from simvos_trt.serve.protocol import MODEL

ROOT = Path(__file__).resolve().parents[1]


def server_ms_per_request(metrics_port: int) -> tuple[int, float]:
    """Triton's count of successful requests of model simvos, and their total duration in ms (its Prometheus
    metrics: PyTriton restricts the statistics API)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as answer:
        lines = answer.read().decode().splitlines()
    value = {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in lines
             if line.startswith("nv_inference_request_") and f'model="{MODEL}"' in line}
    return int(value["nv_inference_request_success"]), value["nv_inference_request_duration_us"] / 1e3


def timed_run(command: list[str], metrics_port: int) -> tuple[float, float, float]:
    """Run one tool; returns its ms/frame (mean, p90) and the server's mean ms per request meanwhile."""
    before = server_ms_per_request(metrics_port)
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    after = server_ms_per_request(metrics_port)
    summary = json.loads(done.stdout)
    server = (after[1] - before[1]) / max(after[0] - before[0], 1)
    return summary["ms_per_frame_mean"], summary["ms_per_frame_p90"], server


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5, help="runs of each tool, in turns [default 5]")
    p.add_argument("--frames", type=int, default=30, help="frames of the video [default 30]")
    p.add_argument("--cpp", type=Path, default=ROOT / "build" / "cpp" / "simvos-segment-cpp",
                   help="simvos-segment-cpp [default build/cpp/simvos-segment-cpp]")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="cpp-client-bench-") as tmp:
        work = Path(tmp)
        model = random_model(SimVOSConfig(backbone="tiny", layer_index=1), seed=1)
        settings = ExportSettings(32, 48, max_objects=2)
        export_folder(model, work / "export", settings, checkpoint=Weights("random", seed=1))
        video = moving_shapes(480, 854, objects=2, frames=args.frames, seed=0)
        (work / "frames").mkdir()
        for i, frame in enumerate(video.frames):
            cv2.imwrite(str(work / "frames" / f"{i:05d}.png"), frame[:, :, ::-1])
        write_index_png(work / "mask.png", video.first_mask)
        common = ["--input", str(work / "frames"), "--mask", str(work / "mask.png"), "--force", "--json"]
        with ServerProcess(work / "export", "--threads", "1", "--instances", "1") as server:
            tools = {"python": [sys.executable, "-m", "simvos_trt.cli.segment", "--no-progress", "--server",
                                server.url, "--out", str(work / "python"), *common],
                     "c++": [str(args.cpp), "--server", server.url, "--out", str(work / "cpp"), *common]}
            results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in tools}
            for run in range(args.runs):
                for name, command in tools.items():
                    results[name].append(timed_run(command, server.metrics_port))
                    mean, p90, on_server = results[name][-1]
                    print(f"run {run} {name:6}: {mean:6.2f} ms/frame mean, {p90:6.2f} p90; server {on_server:5.2f} "
                          "ms/request", flush=True)
    print(f"{args.frames} frames of 480x854, {args.runs} runs each, medians of the runs:")
    for name, rows in results.items():
        mean, p90, on_server = (statistics.median(column) for column in zip(*rows, strict=True))
        rest = statistics.median(row[0] - row[2] for row in rows)
        print(f"  {name:6}: {mean:6.2f} ms/frame mean, {p90:6.2f} p90; server {on_server:5.2f} ms/request; "
              f"client and transport (each run's mean less its server time) {rest:5.2f} ms/frame")


if __name__ == "__main__":
    main()
