"""Videos per minute with 1 and 2 workers on this machine (simvos-batch's distribution; ONNX Runtime, random weights).

    .venv/bin/python benchmarks/batch_scaling.py                        # T at 128x224, 8 videos of 24 frames
    .venv/bin/python benchmarks/batch_scaling.py --videos 4 --frames 12 --out /tmp/batch-bench
    unshare -n sh -c 'ip link set lo up && exec .venv/bin/python benchmarks/batch_scaling.py --ray'   # + Ray rows

Exports SimVOS-T (random weights) at --size, writes --videos synthetic videos (moving ellipses, --objects each) in
simvos-batch's root layout, then segments them all, from scratch, once per row: this process with all cores, 1 and
2 worker processes (cores / workers ONNX Runtime threads each), and with --ray a local Ray cluster with 1 and 2
actors (only inside a network namespace with loopback alone, as above: Ray must not listen outward here). Each row
is the wall time of ``segment_videos`` including the workers' start (each opens the export) but not the Ray
cluster's; with --repeats the rows run in turns and the fastest run of each is reported. Writes results.json
and report.md to benchmarks/results/<date>-<host>-batch/; benchmarks/README.md says how this scales on N GPUs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import cv2

from simvos_trt.batch import InProcess, Processes, SegmenterSpec, segment_videos, videos_plan
from simvos_trt.bench.hardware import host_info
from simvos_trt.bench.measure import moving_shapes
from simvos_trt.io import write_atomic
from simvos_trt.runtime.png import write_index_png


def make_videos(root: Path, videos: int, frames: int, size: tuple[int, int], objects: int) -> None:
    """``root/JPEGImages/<video>/*.jpg`` and ``root/Annotations/<video>/00000.png``."""
    for v in range(videos):
        video = moving_shapes(*size, objects=objects, frames=frames, seed=v)
        (root / "JPEGImages" / f"video-{v:03d}").mkdir(parents=True)
        (root / "Annotations" / f"video-{v:03d}").mkdir(parents=True)
        for t, frame in enumerate(video.frames):
            cv2.imwrite(str(root / "JPEGImages" / f"video-{v:03d}" / f"{t:05d}.jpg"), frame[..., ::-1])
        write_index_png(root / "Annotations" / f"video-{v:03d}" / "00000.png", video.first_mask)


def export_t(folder: Path, size: tuple[int, int]) -> None:
    from simvos_trt.config import preset
    from simvos_trt.export.onnx_export import ExportSettings, export_folder
    from simvos_trt.manifest import Weights
    from simvos_trt.model import random_model

    export_folder(random_model(preset("T"), seed=0), folder, ExportSettings(*size, max_objects=4),
                  checkpoint=Weights("random", seed=0))


def timed(pool, plan, out: Path) -> dict:
    """Segment the plan's videos on ``pool``: from the workers' start (each opens the export) to the last video
    (a Ray cluster is started before the clock, as one already runs on a real cluster)."""
    with pool:
        t0 = time.perf_counter()
        runs = segment_videos(plan, pool, pool.start(plan.task), out, tool="batch-bench")
        seconds = time.perf_counter() - t0
    frames = sum(r.frames for r in runs)
    return {"seconds": round(seconds, 2), "videos_per_minute": round(len(runs) * 60 / seconds, 2),
            "frames_per_second": round(frames / seconds, 2),
            "busy_seconds": round(sum(r.seconds for r in runs), 2)}


def report(result: dict) -> str:
    s, h = result["setup"], result["host"]
    machine = f"{h['host']}, {h['cpu']}, {h['cores']['usable']} cores; {h['date']}"
    lines = [f"# Videos per minute, 1 and 2 workers ({machine})", "",
             f"SimVOS-T (random weights) at {s['size'][0]}x{s['size'][1]}, ONNX Runtime float32, {s['videos']} videos "
             f"of {s['frames']} frames, {s['objects']} objects; load average before the run: {s['load_before']}.", "",
             "| workers | seconds (fastest) | videos/min | frames/s | vs 1 process | load after | all runs (s) |",
             "|---|---|---|---|---|---|---|"]
    base = next(r["videos_per_minute"] for r in result["rows"] if r["pool"] == "1 process")
    for r in result["rows"]:
        lines.append(f"| {r['pool']} | {r['seconds']} | {r['videos_per_minute']} | {r['frames_per_second']} | "
                     f"{r['videos_per_minute'] / base:.2f} | {r['load_after']} | {r['all_seconds']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=int, default=8, help="videos to segment per row")
    p.add_argument("--frames", type=int, default=24, help="frames per video")
    p.add_argument("--objects", type=int, default=2, help="objects per video")
    p.add_argument("--size", default="128x224", help="frame and engine size HxW (multiples of 16)")
    p.add_argument("--ray", action="store_true", help="also a local Ray cluster with 1 and 2 actors")
    p.add_argument("--repeats", type=int, default=1, help="runs of every row, in turns; the fastest is reported")
    p.add_argument("--out", type=Path, help="result folder [default benchmarks/results/<date>-<host>-batch]")
    args = p.parse_args()
    size = tuple(int(x) for x in args.size.split("x"))
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="batch-bench-") as tmp:
        work = Path(tmp)
        export_t(work / "export", size)
        make_videos(work / "videos", args.videos, args.frames, size, args.objects)
        plan = videos_plan(work / "videos")
        spec = SegmenterSpec(work / "export", "onnxruntime")
        pools = {"this process": lambda: InProcess(spec),
                 "1 process": lambda: Processes(SegmenterSpec(spec.folder, spec.backend, cores), 1),
                 "2 processes": lambda: Processes(SegmenterSpec(spec.folder, spec.backend, max(1, cores // 2)), 2)}
        if args.ray:
            from simvos_trt.batch.cluster import RayPool

            for n in (1, 2):
                pools[f"Ray, {n} actor{'s' * (n > 1)}"] = lambda n=n: RayPool(
                    SegmenterSpec(spec.folder, spec.backend, max(1, cores // n)), count=n)
        load = os.getloadavg()
        runs: dict[str, list[dict]] = {name: [] for name in pools}
        for _ in range(args.repeats):  # the rows in turn, so that a change in the machine's load hits all alike
            for name, make in pools.items():
                runs[name].append({**timed(make(), plan, work / "out"), "load_after": round(os.getloadavg()[0], 1)})
                print(json.dumps({"pool": name, **runs[name][-1]}), flush=True)
                shutil.rmtree(work / "out")
    rows = [{"pool": name, **min(tries, key=lambda r: r["seconds"]), "all_seconds": [r["seconds"] for r in tries]}
            for name, tries in runs.items()]
    result = {"host": host_info(), "rows": rows,
              "setup": {"videos": args.videos, "frames": args.frames, "objects": args.objects, "size": size,
                        "load_before": [round(x, 2) for x in load]}}
    out = args.out or Path(__file__).parent / "results" / f"{dt.date.today()}-{socket.gethostname()}-batch"
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "results.json", json.dumps(result, indent=1) + "\n")
    write_atomic(out / "report.md", report(result))
    print(report(result))


if __name__ == "__main__":
    main()
