"""simvos-serve under load and a fault: N videos at once for a fixed time over 2 servers, one of them
killed (SIGKILL) half-way; the client moves its videos to the other (ONNX Runtime, random weights).

    export SIMVOS_SERVE_PYTHON=$PWD/.venv-serve/bin/python        # the servers' venv (README)
    .venv/bin/python benchmarks/serve_load.py                       # T at 128x192, 4 videos, 120 s
    .venv/bin/python benchmarks/serve_load.py --videos 8 --seconds 60 --out /tmp/load

Each client thread segments videos of ``--frames`` frames one after another (a new video when one ends)
through one ``SegmentationClient`` over both servers, until the time is up. Reports ms per frame (the
client's whole round trip of ``step``; p50, p99, before and after the kill), frames/s, each server's RSS
(with its Triton and Python backend children) before the kill and at the end, how many videos moved, and
frames lost: frames whose ``step`` raised (must be 0). Writes results.json and report.md to
benchmarks/results/<date>-<host>-serve-load/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from serve_overhead import SIZES, save, server_rss_mb  # this folder: run as a script

from simvos_trt.bench.hardware import host_info
from simvos_trt.bench.measure import moving_shapes
from simvos_trt.serve import SegmentationClient, ServerProcess


class Load:
    """Client threads segmenting videos until ``stop``; per-step times (with the time each ended) and failures."""

    def __init__(self, client: SegmentationClient, videos: int, size: tuple[int, int], frames: int) -> None:
        self.client, self.size, self.frames = client, size, frames
        self.stop = threading.Event()
        self.steps: list[tuple[float, float]] = []  # (end time, seconds) of each step
        self.lost: list[str] = []
        self.moves = 0
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(videos)]

    def _run(self, seed: int) -> None:
        video = moving_shapes(*self.size, objects=2, frames=self.frames, seed=seed)
        while not self.stop.is_set():
            with self.client.video() as remote:
                remote.start(video.frames[0], video.first_mask)
                for frame in video.frames[1:]:
                    if self.stop.is_set():
                        break
                    t0 = time.perf_counter()
                    try:
                        remote.step(frame)
                    except Exception as exc:  # counted, and the video given up: that frame is lost
                        with self._lock:
                            self.lost.append(f"{type(exc).__name__}: {exc}")
                        break
                    t1 = time.perf_counter()
                    with self._lock:
                        self.steps.append((t1, t1 - t0))
                with self._lock:
                    self.moves += remote.moves


def summary(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1e3
    return {"p50_ms": float(np.median(ms)), "p99_ms": float(np.percentile(ms, 99)), "n": len(ms)} if len(ms) else {}


def measure(args: argparse.Namespace, work: Path) -> dict:
    H, W = SIZES[args.variant]
    folder = work / args.variant
    subprocess.run([sys.executable, "-m", "simvos_trt.cli.export", "--variant", args.variant, "--height", str(H),
                    "--width", str(W), "--max-objects", "2", "--out", str(folder)],
                   check=True, stdout=subprocess.DEVNULL)
    options = ("--threads", str(args.threads), "--instances", str(args.videos))
    with ServerProcess(folder, *options, log=work / "a.log") as a, \
            ServerProcess(folder, *options, log=work / "b.log") as b, SegmentationClient(f"{a.url},{b.url}") as client:
        load = Load(client, args.videos, (H, W), args.frames)
        for th in load.threads:
            th.start()
        t0 = time.perf_counter()
        time.sleep(args.seconds / 2)
        rss_before = {"a": server_rss_mb(a.process.pid), "b": server_rss_mb(b.process.pid)}
        t_kill = time.perf_counter()
        a.kill()  # the server, Triton and its stubs
        time.sleep(args.seconds / 2)
        load.stop.set()
        for th in load.threads:
            th.join(timeout=600)
        t_end = time.perf_counter()
        rss_after = {"b": server_rss_mb(b.process.pid)}
    steps = load.steps
    return {
        "variant": args.variant, "size": f"{H}x{W}", "objects": 2, "videos_at_once": args.videos,
        "frames_per_video": args.frames, "seconds": t_end - t0, "ort_threads": args.threads,
        "all": summary([s for _, s in steps]), "before_kill": summary([s for t, s in steps if t < t_kill]),
        "after_kill": summary([s for t, s in steps if t >= t_kill]),
        "frames_per_s": len(steps) / (t_end - t0), "frames_lost": len(load.lost), "lost": load.lost[:10],
        "videos_moved": load.moves, "server_rss_mb_before_kill": rss_before, "server_rss_mb_at_end": rss_after}


def report(r: dict, stamp: dict) -> str:
    def ms(s: dict) -> str:
        return f"{s['p50_ms']:.1f} / {s['p99_ms']:.1f} (n={s['n']})" if s else "-"

    return "\n".join([
        f"simvos-serve under load, ONNX Runtime on {stamp['cpu']} ({stamp['cores']['logical']} cores), "
        f"{stamp['date']}: {r['variant']} at {r['size']}, {r['objects']} objects, {r['videos_at_once']} videos at once "
        f"({r['frames_per_video']} frames each, then a new one) over 2 servers for {r['seconds']:.0f} s; server a "
        "killed (SIGKILL) half-way.", "",
        "| ms per frame p50 / p99: all | before the kill | after the kill | frames/s | frames lost | videos moved "
        "| server RSS before the kill (a, b) | server b RSS at the end |",
        "|---|---|---|---|---|---|---|---|",
        f"| {ms(r['all'])} | {ms(r['before_kill'])} | {ms(r['after_kill'])} | {r['frames_per_s']:.2f} | "
        f"{r['frames_lost']} | {r['videos_moved']} | {r['server_rss_mb_before_kill']['a']:.0f}, "
        f"{r['server_rss_mb_before_kill']['b']:.0f} MB | {r['server_rss_mb_at_end']['b']:.0f} MB |", ""])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", choices=sorted(SIZES), default="T", help="export variant [default T]")
    p.add_argument("--videos", type=int, default=4, help="videos at once [default 4]")
    p.add_argument("--seconds", type=float, default=120.0, help="run time; the kill is half-way [default 120]")
    p.add_argument("--frames", type=int, default=20, help="frames per video [default 20]")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads per server [default 1]")
    p.add_argument("--out", type=Path, default=None, help="result folder [default benchmarks/results/...]")
    args = p.parse_args()
    stamp = host_info()
    out = args.out or Path(__file__).parent / "results" / f"{dt.date.today()}-{socket.gethostname()}-serve-load"
    with tempfile.TemporaryDirectory(prefix="serve-load-") as work:
        row = measure(args, Path(work))
    save(out, {"host": stamp, "result": row}, report(row, stamp))


if __name__ == "__main__":
    main()
