"""What simvos-serve costs: per-frame time through the server, by each transport (gRPC, shared memory),
against the in-process runtime, and frames/s with 1, 2 and 4 videos at once through one server (ONNX Runtime,
random weights).

    export SIMVOS_SERVE_PYTHON=$PWD/.venv-serve/bin/python       # the server's venv (README)
    .venv/bin/python benchmarks/serve_overhead.py                 # T at 128x192 and BS at 480x864
    .venv/bin/python benchmarks/serve_overhead.py --variant T --frames 20 --out /tmp/serve-bench

Per variant: export (random weights, in a child process); time ``VideoSession.step`` in this
process and ``RemoteVideo.step`` (the client's whole round trip) through a ``simvos-serve``
child process (``--instances 4``, the same ONNX Runtime threads) on the same video, frame by
frame in turns, once with the tensors in the gRPC messages and once through system shared
memory; then 1, 2 and 4 client threads (BS: 1 and 2) each segmenting their own video at once.
Writes results.json and report.md to benchmarks/results/<date>-<host>-serve/.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from simvos_trt.bench.hardware import host_info
from simvos_trt.bench.measure import SyntheticVideo, moving_shapes
from simvos_trt.runtime import VideoSegmenter
from simvos_trt.runtime.png import write_atomic
from simvos_trt.serve import SegmentationClient, ServerProcess

SIZES = {"T": (128, 192), "BS": (480, 864)}


#: The client's transports: tensors in the gRPC message, or through Triton's system shared memory.
TRANSPORTS = {"grpc": False, "shm": True}


def paired_step_times(sessions: dict[str, Any], video: SyntheticVideo, warmup: int) -> dict[str, list[float]]:
    """Seconds of each ``step`` of the same video in each session (in this process, through the server by each
    transport), taken in turns frame by frame so that a change in the machine's load hits all alike."""
    for session in sessions.values():
        session.start(video.frames[0], video.first_mask)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for frame in video.frames[1:]:
        for name, session in sessions.items():
            t0 = time.perf_counter()
            session.step(frame)
            times[name].append(time.perf_counter() - t0)
    return {name: t[warmup:] for name, t in times.items()}


def paired_start_times(makers: dict[str, Any], video: SyntheticVideo, n: int) -> dict[str, list[float]]:
    """Seconds of ``start`` of a video in each way (``makers``: name -> a function giving a new video), ``n``
    times in turns: the server's cost at this frame size when the model's work is small (one memory encoding)."""
    times: dict[str, list[float]] = {name: [] for name in makers}
    for _ in range(n + 1):
        for name, make in makers.items():
            with make() as session:
                t0 = time.perf_counter()
                session.start(video.frames[0], video.first_mask)
                times[name].append(time.perf_counter() - t0)
    return {name: t[1:] for name, t in times.items()}


def concurrent_fps(url: str, videos: list[SyntheticVideo]) -> float:
    """Propagated frames per second with one client thread per video, all at once."""
    barrier = threading.Barrier(len(videos) + 1)

    def run(video: SyntheticVideo) -> None:
        with SegmentationClient(url) as client, client.video() as remote:
            remote.start(video.frames[0], video.first_mask)
            barrier.wait()
            for frame in video.frames[1:]:
                remote.step(frame)

    threads = [threading.Thread(target=run, args=(v,)) for v in videos]
    for th in threads:
        th.start()
    barrier.wait()
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    return sum(len(v.frames) - 1 for v in videos) / (time.perf_counter() - t0)


def summary(times: list[float]) -> dict[str, float]:
    ms = np.array(times) * 1e3
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)), "n": len(ms)}


def server_rss_mb(pid: int) -> float:
    """Resident memory of the server and its children (tritonserver, the Python backend stubs), MB."""
    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


def measure(variant: str, frames: int, concurrency: list[int], threads: int, work: Path) -> dict:
    H, W = SIZES[variant]
    folder, t0 = work / variant, time.perf_counter()
    subprocess.run([sys.executable, "-m", "simvos_trt.cli.export", "--variant", variant, "--height", str(H),
                    "--width", str(W), "--max-objects", "2", "--out", str(folder)],
                   check=True, stdout=subprocess.DEVNULL)
    print(f"{variant}: exported in {time.perf_counter() - t0:.0f} s", flush=True)
    video = moving_shapes(H, W, objects=2, frames=frames + 2)
    with ServerProcess(folder, "--threads", str(threads), "--instances", "4", log=work / f"{variant}.log") as srv:
        with contextlib.ExitStack() as stack:
            seg = stack.enter_context(VideoSegmenter.open(folder, "onnxruntime", threads=threads))
            clients = {name: stack.enter_context(SegmentationClient(srv.url, shared_memory=shared,
                                                                    exact_failover=False))  # the transport alone
                       for name, shared in TRANSPORTS.items()}
            remotes = {name: stack.enter_context(c.video()) for name, c in clients.items()}
            sessions = {"in_process": seg.video(), **remotes}
            steps = {name: summary(t) for name, t in paired_step_times(sessions, video, warmup=1).items()}
            large, n = moving_shapes(480, 854, objects=2, frames=1), 10 if variant == "T" else 2
            makers = {"in_process": seg.video, **{name: c.video for name, c in clients.items()}}
            starts = {name: summary(t) for name, t in paired_start_times(makers, large, n).items()}
        fps, rss = {}, {}
        for n in concurrency:
            videos = [moving_shapes(H, W, 2, (8 if variant == "T" else 2) + 1, seed=s) for s in range(n)]
            fps[n], rss[n] = concurrent_fps(srv.url, videos), server_rss_mb(srv.process.pid)
    local, start_local = steps.pop("in_process"), starts.pop("in_process")
    row = {"variant": variant, "size": f"{H}x{W}", "objects": 2, "ort_threads": threads, "in_process": local,
           "server": steps, "overhead_ms": {k: v["median_ms"] - local["median_ms"] for k, v in steps.items()},
           "concurrent_fps": fps,
           "start_480x854": {"in_process": start_local, "server": starts,
                             "overhead_ms": {k: v["median_ms"] - start_local["median_ms"] for k, v in starts.items()}},
           "server_rss_mb_after": rss, "frames_per_concurrent_video": len(videos[0].frames) - 1,
           "load_average_1min": os.getloadavg()[0]}
    print(json.dumps(row), flush=True)
    return row


def report(rows: list[dict], stamp: dict) -> str:
    load = ", ".join(f"{r['variant']} {r['load_average_1min']:.1f}" for r in rows)
    lines = [f"simvos-serve overhead, ONNX Runtime on {stamp['cpu']} ({stamp['cores']['logical']} cores), "
             f"{stamp['date']}; "
             f"1-min load average at the end of each variant (the machine was shared): {load}", "",
             "| variant | size | in-process ms/frame (median, p90) | server ms/frame, gRPC / shared memory (median, "
             "p90) | overhead ms, gRPC / shared memory | frames/s, 1 / 2 / 4 videos at once | server memory after "
             "(videos: RSS) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        a, b, o = r["in_process"], r["server"], r["overhead_ms"]
        fps = " / ".join(f"{r['concurrent_fps'][n]:.2f}" if n in r["concurrent_fps"] else "-" for n in (1, 2, 4))
        rss = ", ".join(f"{n}: {mb / 1024:.1f} GB" for n, mb in r["server_rss_mb_after"].items())
        served = " / ".join(f"{b[t]['median_ms']:.1f}, {b[t]['p90_ms']:.1f}" for t in TRANSPORTS)
        lines.append(f"| {r['variant']} | {r['size']} | {a['median_ms']:.1f}, {a['p90_ms']:.1f} (n={a['n']}) | "
                     f"{served} | {' / '.join(f'{o[t]:+.1f}' for t in TRANSPORTS)} | {fps} | {rss} |")
    lines += ["", "The server's cost at 480x854 frames, measured where the model's work is small (T): the first frame "
              "(start: one memory encoding) of a 480x854 video, 2 objects, in turns:", "",
              "| engine | in-process start ms (median) | server start ms, gRPC / shared memory (median) | "
              "overhead ms, gRPC / shared memory |", "|---|---|---|---|"]
    for r in rows:
        st = r["start_480x854"]
        served = " / ".join(f"{st['server'][t]['median_ms']:.1f}" for t in TRANSPORTS)
        overhead = " / ".join(f"{st['overhead_ms'][t]:+.1f}" for t in TRANSPORTS)
        lines.append(f"| {r['variant']} {r['size']} | {st['in_process']['median_ms']:.1f} (n={st['in_process']['n']})"
                     f" | {served} | {overhead} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", action="append", choices=sorted(SIZES), help="T and/or BS [default both]")
    p.add_argument("--frames", type=int, default=None, help="timed frames per variant [default T 30, BS 3]")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads [default 2]")
    p.add_argument("--bs-concurrency", type=int, nargs="+", default=[1, 2],
                   help="videos at once for BS [default 1 2: 4 at once took > 12 GB in ONNX Runtime's arenas]")
    p.add_argument("--out", type=Path, default=None, help="result folder [default benchmarks/results/...]")
    args = p.parse_args()
    stamp = host_info()
    out = args.out or Path(__file__).parent / "results" / f"{dt.date.today()}-{socket.gethostname()}-serve"
    rows = []
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as work:
        for variant in args.variant or ["T", "BS"]:
            frames = args.frames or (30 if variant == "T" else 3)
            concurrency = [1, 2, 4] if variant == "T" else args.bs_concurrency
            rows.append(measure(variant, frames, concurrency, args.threads, Path(work)))
    save(out, {"host": stamp, "rows": rows}, report(rows, stamp))


def save(out: Path, results: dict, text: str) -> None:
    """Write ``results`` as results.json and ``text`` as report.md into ``out``, and print the report."""
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "results.json", json.dumps(results, indent=1).encode())
    write_atomic(out / "report.md", text.encode())
    print(text)


if __name__ == "__main__":
    main()
