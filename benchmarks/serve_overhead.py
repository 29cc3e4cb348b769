"""What simvos-serve costs: per-frame time through the server against the in-process runtime, and
frames/s with 1, 2 and 4 videos at once through one server (ONNX Runtime, random weights).

    export SIMVOS_SERVE_PYTHON=$PWD/.venv-serve/bin/python       # the server's venv (README)
    .venv/bin/python benchmarks/serve_overhead.py                 # T at 128x192 and BS at 480x864
    .venv/bin/python benchmarks/serve_overhead.py --variant T --frames 20 --out /tmp/serve-bench

Per variant: export (random weights, in a child process); time ``VideoSession.step`` in this
process and ``RemoteVideo.step`` (the client's whole round trip) through a ``simvos-serve``
child process (``--instances 4``, the same ONNX Runtime threads) on the same video, frame by
frame in turns; then 1, 2 and 4 client threads (BS: 1 and 2) each segmenting their own video
at once. Writes results.json and report.md to benchmarks/results/<date>-<host>-serve/.
"""

from __future__ import annotations

import argparse
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

import numpy as np
import psutil

from simvos_trt.bench.hardware import host_info
from simvos_trt.bench.measure import SyntheticVideo, moving_shapes
from simvos_trt.runtime import VideoSegmenter
from simvos_trt.runtime.png import write_atomic
from simvos_trt.serve import SegmentationClient, ServerProcess

SIZES = {"T": (128, 192), "BS": (480, 864)}


def paired_step_times(local, remote, video: SyntheticVideo, warmup: int) -> tuple[list[float], list[float]]:
    """Seconds of each ``step`` of the same video in this process and through the server, taken in
    turns frame by frame so that a change in the machine's load hits both alike."""
    local.start(video.frames[0], video.first_mask)
    remote.start(video.frames[0], video.first_mask)
    times: tuple[list[float], list[float]] = ([], [])
    for frame in video.frames[1:]:
        for session, out in zip((local, remote), times, strict=True):
            t0 = time.perf_counter()
            session.step(frame)
            out.append(time.perf_counter() - t0)
    return times[0][warmup:], times[1][warmup:]


def paired_start_times(seg: VideoSegmenter, client: SegmentationClient, video: SyntheticVideo,
                       n: int) -> tuple[list, list]:
    """Seconds of ``start`` of a video in this process and through the server, ``n`` times in turns:
    the server's cost at this frame size when the model's work is small (one memory encoding)."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(n + 1):
        for session, out in zip((seg.video(), client.video()), times, strict=True):
            t0 = time.perf_counter()
            session.start(video.frames[0], video.first_mask)
            out.append(time.perf_counter() - t0)
            if hasattr(session, "close"):
                session.close()
    return times[0][1:], times[1][1:]


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
        with VideoSegmenter.open(folder, "onnxruntime", threads=threads) as seg, \
                SegmentationClient(srv.url) as client, client.video() as remote:
            local, served = map(summary, paired_step_times(seg.video(), remote, video, warmup=1))
            large, n = moving_shapes(480, 854, objects=2, frames=1), 10 if variant == "T" else 2
            start_local, start_served = map(summary, paired_start_times(seg, client, large, n))
        fps, rss = {}, {}
        for n in concurrency:
            videos = [moving_shapes(H, W, 2, (8 if variant == "T" else 2) + 1, seed=s) for s in range(n)]
            fps[n], rss[n] = concurrent_fps(srv.url, videos), server_rss_mb(srv.pid)
    row = {"variant": variant, "size": f"{H}x{W}", "objects": 2, "ort_threads": threads, "in_process": local,
           "server": served, "overhead_ms": served["median_ms"] - local["median_ms"], "concurrent_fps": fps,
           "start_480x854": {"in_process": start_local, "server": start_served,
                             "overhead_ms": start_served["median_ms"] - start_local["median_ms"]},
           "server_rss_mb_after": rss, "frames_per_concurrent_video": len(videos[0].frames) - 1,
           "load_average_1min": os.getloadavg()[0]}
    print(json.dumps(row), flush=True)
    return row


def report(rows: list[dict], stamp: dict) -> str:
    load = ", ".join(f"{r['variant']} {r['load_average_1min']:.1f}" for r in rows)
    lines = [f"simvos-serve overhead, ONNX Runtime on {stamp['cpu']} ({stamp['cores']['logical']} cores), "
             f"{stamp['date']}; "
             f"1-min load average at the end of each variant (the machine was shared): {load}", "",
             "| variant | size | in-process ms/frame (median, p90) | server ms/frame (median, p90) | overhead ms "
             "| frames/s, 1 / 2 / 4 videos at once | server memory after (videos: RSS) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        a, b = r["in_process"], r["server"]
        fps = " / ".join(f"{r['concurrent_fps'][n]:.2f}" if n in r["concurrent_fps"] else "-" for n in (1, 2, 4))
        rss = ", ".join(f"{n}: {mb / 1024:.1f} GB" for n, mb in r["server_rss_mb_after"].items())
        lines.append(f"| {r['variant']} | {r['size']} | {a['median_ms']:.1f}, {a['p90_ms']:.1f} (n={a['n']}) | "
                     f"{b['median_ms']:.1f}, {b['p90_ms']:.1f} (n={b['n']}) | {r['overhead_ms']:+.1f} | {fps} | "
                     f"{rss} |")
    lines += ["", "The server's cost at 480x854 frames, measured where the model's work is small (T): the first frame "
              "(start: one memory encoding) of a 480x854 video, 2 objects, in turns:", "",
              "| engine | in-process start ms (median) | server start ms (median) | overhead ms |", "|---|---|---|---|"]
    for r in rows:
        st = r["start_480x854"]
        lines.append(f"| {r['variant']} {r['size']} | {st['in_process']['median_ms']:.1f} (n={st['server']['n']}) | "
                     f"{st['server']['median_ms']:.1f} | {st['overhead_ms']:+.1f} |")
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
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "results.json", json.dumps({"host": stamp, "rows": rows}, indent=1).encode())
    write_atomic(out / "report.md", report(rows, stamp).encode())
    print(report(rows, stamp))


if __name__ == "__main__":
    main()
