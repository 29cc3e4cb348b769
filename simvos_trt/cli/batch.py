"""simvos-batch: segment many videos (no scoring) with the graphs of an export folder, in this process, in N
processes or on a Ray cluster. One folder of palette PNGs per video, each written whole with its record; an
interrupted run resumes (finished videos are skipped).

--videos takes a list file, one video a line: FRAMES<tab>MASK (a folder of frames or a video file, and its first
frame's index mask; relative paths start at the list's folder), or a root folder holding JPEGImages/<video>/
frames and Annotations/<video>/<frame>.png masks: the first frame's, and any later frame's, whose objects join
(or are corrected) there (the YouTube-VOS layout).

    simvos-batch --engine-dir engines/bs --videos archive.txt --out results/archive --workers 4
    simvos-batch --engine-dir engines/bs --videos ytvos/valid --out results/ytvos --ray head-node:6379

Exit codes: 0 done; 2 bad options, videos or export folder, or a worker failed; 130 interrupted (the same
command resumes)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..runtime.backends import AUTO, BACKENDS
from .common import EXIT_OK, add_output_options, command_parser, flag, run_command
from .workers import add_worker_options, check_worker_options, worker_pool

PROG = "simvos-batch"


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(PROG, __doc__)
    p.add_argument("--engine-dir", type=Path, required=True, metavar="DIR", help="export folder (simvos-export)")
    p.add_argument("--videos", type=Path, required=True, metavar="LIST_OR_ROOT",
                   help="the videos: a list file or a root folder (see above)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="results folder: <DIR>/<video>/<frame>.png, named after the frames (00000.png, ... for a "
                   "video file), in the mask's ids and palette")
    p.add_argument("--backend", choices=(AUTO, *BACKENDS), default=AUTO,
                   help="auto: TensorRT when usable, else ONNX Runtime (resolved by each worker: they must agree)")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads per graph and worker")
    p.add_argument("--device", help="torch backend: the device to run on, e.g. cuda:0 [default cpu]")
    flag(p, "--bgr", default=True, text="decoded frames are in OpenCV's BGR order; --no-bgr passes the channels as "
         "they are (for files stored with red and blue swapped)")
    flag(p, "--force", text="segment finished videos again, and replace another export's or backend's results")
    add_worker_options(p)
    add_output_options(p, progress=True)
    return p


def _work(args: argparse.Namespace) -> int:
    """Segment every video of ``args.videos``; print the summary."""
    from ..batch import SegmenterSpec, VideoRun, segment_videos, videos_per_minute, videos_plan

    def progress(index: int, total: int, run: VideoRun) -> None:
        if args.progress:
            done = ("skipped, finished earlier" if run.skipped
                    else f"{run.frames} frames, {run.fps:.1f} frames/s, {run.worker}")
            print(f"{PROG}: [{index}/{total}] {run.name}: {done}", file=sys.stderr, flush=True)

    plan = videos_plan(args.videos, args.bgr)
    t0 = time.perf_counter()
    with worker_pool(args, SegmenterSpec(args.engine_dir, args.backend, args.threads, args.device)) as pool:
        opened = pool.start(plan.task)
        runs = segment_videos(plan, pool, opened, args.out, tool=PROG, force=args.force, progress=progress)
    per_minute = videos_per_minute(runs, time.perf_counter() - t0)
    segmented = [r for r in runs if not r.skipped]
    frames = sum(r.frames for r in segmented)
    if args.json:
        print(json.dumps({"out": str(args.out), "backend": opened.backend, "videos": len(runs),
                          "segmented": len(segmented), "frames": frames, "videos_per_minute": per_minute,
                          "runs": [{"video": r.name, "frames": r.frames, "skipped": r.skipped, "seconds": r.seconds,
                                    "worker": r.worker, "attempts": r.attempts} for r in runs]}, indent=1))
    else:
        print(f"{PROG}: {len(segmented)} of {len(runs)} videos segmented ({frames} frames, {per_minute:.1f} "
              f"videos/min, {opened.backend}), {len(runs) - len(segmented)} finished earlier; masks in {args.out}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_worker_options(parser, args)
    return run_command(PROG, args, _work, interrupted="interrupted; the videos finished so far are kept (each "
                       "written whole), and the same command resumes")


if __name__ == "__main__":
    sys.exit(main())
