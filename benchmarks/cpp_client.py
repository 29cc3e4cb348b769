"""What the C++ client costs per frame against the Python client: ``Video::step`` (simvos_client) and
``RemoteVideo.step`` (simvos_trt.serve; over gRPC, as the C++ client, and over Triton's system shared memory) on
the same server and the same 480x854 video, run in turns. Both clients keep what a failover needs (the state
answered with every frame).

    cmake -S . -B build && cmake --build build                            # README, "C++ client"
    export SIMVOS_SERVE_PYTHON=$PWD/.venv-serve/bin/python                 # the server's venv (README)
    .venv/bin/python benchmarks/cpp_client.py --runs 7 --frames 30

The server (one instance, ONNX Runtime, 1 thread) serves a tiny export (ViT-tiny, L=1, no token refinement,
32x48, random weights), so that the model's work is small next to what is measured: each 480x854 frame goes
to the server whole (1.2 MB) and is resized there. Each client decodes the frames first, then times every
``step`` after the first frame: its wall time (the round trip) and the CPU time its process spent meanwhile
(all threads, gRPC's too: the client's own cost, whatever the server does). Triton's Prometheus metrics give
the server's time per request over the same run (``nv_inference_request_duration_us`` over
``nv_inference_request_success``; PyTriton restricts the statistics API). The C++ half is
``build/cpp/simvos-bench-client``. Prints one line per run and the medians of the runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2

from simvos_trt.bench.measure import moving_shapes
from simvos_trt.config import SimVOSConfig
from simvos_trt.export.onnx_export import ExportSettings, export_folder
from simvos_trt.manifest import Weights
from simvos_trt.model import random_model
from simvos_trt.runtime.png import read_index_png, write_index_png
from simvos_trt.serve import SegmentationClient, ServerProcess
from simvos_trt.serve.protocol import MODEL

ROOT = Path(__file__).resolve().parents[1]


def server_requests(metrics_port: int) -> tuple[int, float]:
    """Triton's count of successful requests of model simvos, and their total duration in ms."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as answer:
        lines = answer.read().decode().splitlines()
    value = {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in lines
             if line.startswith("nv_inference_request_") and f'model="{MODEL}"' in line}
    return int(value["nv_inference_request_success"]), value["nv_inference_request_duration_us"] / 1e3


def python_steps(url: str, frames: Path, mask: Path, shared_memory: bool) -> dict[str, list[float]]:
    """Wall and process CPU ms of each ``RemoteVideo.step`` after the first frame."""
    images = [cv2.imread(str(f), cv2.IMREAD_COLOR) for f in sorted(frames.glob("*.png"))]
    times: dict[str, list[float]] = {"wall_ms": [], "cpu_ms": []}
    with SegmentationClient(url, shared_memory=shared_memory) as client, client.video() as video:
        video.start(images[0], read_index_png(mask).labels, bgr=True)
        for image in images[1:]:
            cpu0, t0 = time.process_time(), time.perf_counter()
            video.step(image)
            times["wall_ms"].append((time.perf_counter() - t0) * 1e3)
            times["cpu_ms"].append((time.process_time() - cpu0) * 1e3)
    return times


def cpp_steps(program: Path, url: str, frames: Path, mask: Path) -> dict[str, list[float]]:
    done = subprocess.run([str(program), url, str(frames), str(mask)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=7, help="runs of each client, in turns [default 7]")
    p.add_argument("--frames", type=int, default=30, help="frames of the video [default 30]")
    p.add_argument("--program", type=Path, default=ROOT / "build" / "cpp" / "simvos-bench-client",
                   help="the C++ half [default build/cpp/simvos-bench-client]")
    args = p.parse_args()
    rows: dict[str, list[tuple[float, float, float]]] = {"python": [], "python shm": [], "c++": []}
    with tempfile.TemporaryDirectory(prefix="cpp-client-bench-") as tmp:
        work = Path(tmp)
        model = random_model(SimVOSConfig(backbone="tiny", layer_index=1), seed=1)
        settings = ExportSettings(32, 48, max_objects=2)
        export_folder(model, work / "export", settings, checkpoint=Weights("random", seed=1))
        video = moving_shapes(480, 854, objects=2, frames=args.frames, seed=0)
        frames, mask = work / "frames", work / "mask.png"
        frames.mkdir()
        for i, frame in enumerate(video.frames):
            cv2.imwrite(str(frames / f"{i:05d}.png"), frame[:, :, ::-1])
        write_index_png(mask, video.first_mask)
        with ServerProcess(work / "export", "--threads", "1", "--instances", "1") as server:
            clients = {"python": lambda: python_steps(server.url, frames, mask, shared_memory=False),
                       "python shm": lambda: python_steps(server.url, frames, mask, shared_memory=True),
                       "c++": lambda: cpp_steps(args.program, server.url, frames, mask)}
            for run in range(args.runs):
                for name, steps in clients.items():
                    before = server_requests(server.metrics_port)
                    times = steps()
                    after = server_requests(server.metrics_port)
                    on_server = (after[1] - before[1]) / (after[0] - before[0])
                    rows[name].append((statistics.median(times["wall_ms"]), statistics.median(times["cpu_ms"]),
                                       on_server))
                    print(f"run {run} {name:10}: step {rows[name][-1][0]:6.2f} ms (median), client CPU "
                          f"{rows[name][-1][1]:5.2f} ms; server {on_server:5.2f} ms/request", flush=True)
    print(f"{args.frames} frames of 480x854, {args.runs} runs each, medians of the runs:")
    for name, runs in rows.items():
        wall, cpu, on_server = (statistics.median(column) for column in zip(*runs, strict=True))
        rest = statistics.median(row[0] - row[2] for row in runs)
        print(f"  {name:10}: step {wall:6.2f} ms, client CPU {cpu:5.2f} ms/frame, server {on_server:5.2f} ms/request, "
              f"step less server time {rest:5.2f} ms")


if __name__ == "__main__":
    main()
