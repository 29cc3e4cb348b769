"""simvos-eval: score video object segmentation on DAVIS 2017 (semi-supervised J&F, the official toolkit's numbers
and CSV files) or YouTube-VOS (the server's zip, and J&F where ground truth exists) of an export folder, of a
folder of predictions, or the difference of two runs.

Exit codes: 0 done; 2 bad options, dataset, predictions or export folder; 130 interrupted (the same command resumes)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..io import check_not_input
from ..tables import fmt, render
from .common import EXIT_OK, add_output_options, command_parser, flag, run_command
from .workers import add_worker_options, check_worker_options, worker_pool

if TYPE_CHECKING:
    from ..batch import VideoPlan
    from ..eval.davis import Evaluation
    from ..eval.run import Progress, SequenceRun
    from ..runtime import VideoSegmenter

PROG = "simvos-eval"


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(PROG, __doc__)
    d = p.add_argument_group("dataset (one of, with --engine-dir and --results)").add_mutually_exclusive_group()
    d.add_argument("--davis-root", type=Path, metavar="DIR", help="DAVIS root holding JPEGImages/480p, "
                   "Annotations/480p and ImageSets/2017/<split>.txt")
    d.add_argument("--youtube-root", type=Path, metavar="DIR", help="YouTube-VOS root holding <split>/JPEGImages, "
                   "<split>/Annotations (each object on the frame where it first appears) and <split>/meta.json")
    p.add_argument("--split", help="DAVIS: the list ImageSets/2017/<split>.txt [default val]; YouTube-VOS: the "
                   "split folder [default valid]")
    m = p.add_argument_group("what to score (one of)").add_mutually_exclusive_group(required=True)
    m.add_argument("--engine-dir", type=Path, metavar="DIR", help="export folder: segment the split, then score")
    m.add_argument("--results", type=Path, metavar="DIR", help="predicted palette PNGs: <DIR>/<seq>/<frame>.png "
                   "(DAVIS), <DIR>/Annotations/<video>/<frame>.png (YouTube-VOS)")
    m.add_argument("--compare", type=Path, nargs=2, metavar=("RUN_A", "RUN_B"),
                   help="two scored results folders: J&F of B minus A per object and globally")
    s = p.add_argument_group("segmentation (with --engine-dir)")
    s.add_argument("--backend", choices=("auto", "onnxruntime", "torch", "tensorrt"), default="auto",
                   help="auto: TensorRT when usable, else ONNX Runtime")
    s.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads per graph (default: all cores)")
    s.add_argument("--device", help="torch backend: the device to run on, e.g. cuda:0 [default cpu]")
    flag(s, "--force", text="segment complete sequences again (they are skipped, "
                   "so a run resumes) and replace another export's or backend's results in --out")
    add_worker_options(p)
    y = p.add_argument_group("YouTube-VOS")
    y.add_argument("--all-frames", type=Path, metavar="DIR", help="every frame of each video, <DIR>/<video>/*.jpg "
                   "(valid_all_frames/JPEGImages): segment them all, save the listed ones (as published results)")
    flag(y, "--save-all", text="save a PNG for every frame segmented, not only for the frames listed in "
                               "<split>/JPEGImages")
    y.add_argument("--zip", type=Path, metavar="FILE", help="also write the evaluation server's archive "
                   "(Annotations/<video>/<frame>.png of the listed frames) to FILE")
    o = p.add_argument_group("output")
    o.add_argument("--out", type=Path, metavar="DIR", help="where the PNGs and CSV files go [default: "
                   "results/<engine-dir name>-<backend> (YouTube-VOS: ...-youtube-<split>), or the --results folder]")
    flag(o, "--per-sequence", text="also print the J-Mean and F-Mean of every object (YouTube-VOS: and the "
                                   "scores of every video)")
    add_output_options(o, progress=True)
    return p


def _say(args: argparse.Namespace, text: str) -> None:
    if args.progress:
        print(f"{PROG}: {text}", file=sys.stderr, flush=True)


#: Segments a dataset with a segmenter into a results folder: run(segmenter, out, progress) -> records.
Runner = Callable[["VideoSegmenter", Path, "Progress"], "list[SequenceRun]"]


def segment(args: argparse.Namespace, root: Path, runner: Runner, plan: Callable[[], VideoPlan],
            suffix: str = "") -> tuple[Path, dict[str, Any]]:
    """Segment the split of ``root`` with ``args.engine_dir``: in this process through ``runner``, or the
    ``plan`` on the workers --workers or --ray ask for; returns the results folder (default
    ``results/<engine-dir name>-<backend><suffix>``) and a summary."""
    from ..batch import SegmenterSpec, VideoRun, segment_videos, videos_per_minute

    def progress(index: int, total: int, run: SequenceRun) -> None:
        worker = f", {run.worker}" if isinstance(run, VideoRun) else ""
        done = (f"skipped, all {run.frames} PNGs present (--force redoes it)" if run.skipped
                else f"{run.frames} frames, {run.fps:.1f} frames/s{worker}")
        _say(args, f"[{index}/{total}] {run.name}: {done}")

    def results_folder(backend: str) -> Path:
        out = args.out or Path("results") / f"{args.engine_dir.resolve().name}-{backend}{suffix}"
        _say(args, f"segmenting split {args.split} of {root} with {args.engine_dir} ({backend}) into {out}")
        return out

    spec = SegmenterSpec(args.engine_dir, args.backend, args.threads, args.device)
    t0 = time.perf_counter()
    runs: list[SequenceRun]
    if (args.workers or 1) > 1 or args.ray is not None:
        videos = plan()
        with worker_pool(args, spec) as pool:
            opened = pool.start(videos.task)
            backend, out = opened.backend, results_folder(opened.backend)
            runs = list(segment_videos(videos, pool, opened, out, tool=PROG, force=args.force, progress=progress))
    else:
        with spec.open() as seg:
            backend, out = seg.backend.name, results_folder(seg.backend.name)
            runs = runner(seg, out, progress)
    sequences = [{"sequence": r.name, "frames": r.frames, "skipped": r.skipped, "seconds": r.seconds,
                  "frames_per_second": r.fps} | ({"worker": r.worker, "attempts": r.attempts}
                                                 if isinstance(r, VideoRun) else {}) for r in runs]
    return out, {"engine_dir": str(args.engine_dir), "backend": backend,
                 "videos_per_minute": videos_per_minute(runs, time.perf_counter() - t0), "sequences": sequences}


def _scores(evaluation: Evaluation) -> dict[str, Any]:
    """The global table and every object's J-Mean and F-Mean, for JSON."""
    from ..eval.metrics import GLOBAL_COLUMNS

    return {"global": dict(zip(GLOBAL_COLUMNS, (_num(x) for x in evaluation.scores.row()), strict=True)),
            "per_sequence": [{"object": o.name, "J-Mean": _num(o.j_stats.mean), "F-Mean": _num(o.f_stats.mean)}
                             for o in evaluation.objects]}


def score(args: argparse.Namespace) -> dict[str, Any]:
    """DAVIS: segment (with --engine-dir) and score; write the CSVs; return the summary."""
    from ..batch import davis_plan
    from ..eval.davis import check_root, csv_paths, dataset_folders, evaluate, write_csvs
    from ..eval.run import segment_dataset

    if args.engine_dir is not None:
        check_root(args.davis_root, args.split)  # before the graphs load
        results, info = segment(args, args.davis_root, lambda seg, out, progress: segment_dataset(
            seg, args.davis_root, args.split, out, force=args.force, progress=progress),
            lambda: davis_plan(args.davis_root, args.split))
    else:
        results, info = args.results, {}
    out = args.out or results  # segment() already wrote into --out when given
    check_not_input(csv_paths(out, args.split)[0], dataset_folders(args.davis_root))
    _say(args, f"scoring {results}")
    evaluation = evaluate(args.davis_root, results, args.split)
    g_path, s_path = write_csvs(evaluation, out)
    return {"split": args.split, "davis_root": str(args.davis_root), "results": str(results),
            "csv": [str(g_path), str(s_path)], **info, **_scores(evaluation)}


def score_youtube(args: argparse.Namespace) -> dict[str, Any]:
    """YouTube-VOS: segment (with --engine-dir), write the zip (--zip), score where ground truth exists."""
    from ..batch import youtube_plan
    from ..eval.davis import csv_paths, write_csvs
    from ..eval.metrics import GLOBAL_COLUMNS
    from ..eval.youtube import evaluate_youtube, open_youtube, per_video, segment_youtube, write_zip

    ds = open_youtube(args.youtube_root, args.split, args.all_frames)  # before the graphs load
    if args.zip is not None:
        check_not_input(args.zip, ds.inputs(), "--zip")
    if args.engine_dir is not None:
        results, info = segment(args, args.youtube_root, lambda seg, out, progress: segment_youtube(
            seg, ds, out, force=args.force, save_all=args.save_all, progress=progress),
            lambda: youtube_plan(ds, args.save_all), f"-youtube-{args.split}")
    else:
        results, info = args.results, {}
    summary = {"split": args.split, "youtube_root": str(args.youtube_root), "results": str(results), **info}
    if args.zip is not None:
        summary["zip"] = {"path": str(args.zip), "pngs": write_zip(ds, results, args.zip)}
        _say(args, f"wrote {args.zip} ({summary['zip']['pngs']} PNGs) for the evaluation server")
    out = args.out or results
    check_not_input(csv_paths(out, args.split)[0], ds.inputs())
    _say(args, f"scoring {results} where there is ground truth")
    evaluation = evaluate_youtube(ds, results)
    if evaluation is None:
        return {**summary, "csv": None, "global": None, "per_sequence": [], "per_video": []}
    videos = [{"video": v, **{c: _num(x) for c, x in zip(GLOBAL_COLUMNS, s.row(), strict=True)}}
              for v, s in per_video(evaluation).items()]
    return {**summary, "csv": [str(p) for p in write_csvs(evaluation, out)], **_scores(evaluation),
            "per_video": videos}


def _num(x: float, digits: int | None = None) -> float | None:
    """For JSON, which has no NaN: null for NaN, else ``x`` (rounded to ``digits``)."""
    if math.isnan(x):
        return None
    return x if digits is None else round(x, digits)


def format_scores(s: dict[str, Any], per_sequence: bool) -> str:
    if s["global"] is None:
        return (f"No ground truth beyond each object's first mask in split {s['split']}: nothing to score here"
                + (f"; submit {s['zip']['path']} to the evaluation server" if "zip" in s else "") + ".")
    cols = list(s["global"])
    lines = [f"Global results for {s['split']} ({s['results']}):",
             render(cols, [[fmt(s["global"][c], ".3f") for c in cols]])]
    if per_sequence:
        rows = [[o["object"], fmt(o["J-Mean"], ".3f"), fmt(o["F-Mean"], ".3f")] for o in s["per_sequence"]]
        lines += ["", "Per-sequence results:", render(["Sequence", "J-Mean", "F-Mean"], rows)]
    if per_sequence and s.get("per_video"):
        keys = ("J&F-Mean", "J-Mean", "F-Mean")
        rows = [[v["video"], *(fmt(v[k], ".3f") for k in keys)] for v in s["per_video"]]
        lines += ["", "Per-video results:", render(["Video", *keys], rows)]
    return "\n".join([*lines, "", f"CSV files: {s['csv'][0]}, {s['csv'][1]}"])


def compare(args: argparse.Namespace) -> dict[str, Any]:
    from ..eval.run import compare_runs

    c = compare_runs(args.compare[0], args.compare[1], args.split)
    worst = max(c.objects, key=lambda o: -1.0 if math.isnan(o.delta) else abs(o.delta), default=None)
    return {"split": args.split, "run_a": str(c.a.folder), "run_b": str(c.b.folder),
            "objects": [{"object": o.name, "J&F A": _num(o.jf_a, 4), "J&F B": _num(o.jf_b, 4),
                         "delta": _num(o.delta, 4)} for o in c.objects],
            "global": {col: {"A": _num(a, 3), "B": _num(c.b.global_row[col], 3),
                             "delta": _num(c.b.global_row[col] - a, 3)} for col, a in c.a.global_row.items()},
            "max_abs_delta": None if worst is None else {"object": worst.name, "delta": _num(worst.delta, 4)}}


def format_comparison(r: dict[str, Any]) -> str:
    rows = [[o["object"], fmt(o["J&F A"], ".4f"), fmt(o["J&F B"], ".4f"), fmt(o["delta"], "+.4f")]
            for o in r["objects"]]
    cols = list(r["global"])
    g_rows = [[run, *(fmt(r["global"][c][key], "+.3f" if key == "delta" else ".3f") for c in cols)]
              for run, key in (("A", "A"), ("B", "B"), ("B - A", "delta"))]
    lines = [f"A: {r['run_a']}", f"B: {r['run_b']}", "",
             f"J&F per object ({r['split']}; the mean of its J-Mean and F-Mean, from the 3-decimal CSVs):",
             render(["Object", "J&F A", "J&F B", "B - A"], rows), "", "Global:", render(["", *cols], g_rows)]
    if r["max_abs_delta"] is not None:
        lines += ["", f"largest per-object |B - A|: {fmt(r['max_abs_delta']['delta'], '+.4f')} "
                      f"({r['max_abs_delta']['object']})"]
    return "\n".join(lines)


def _work(args: argparse.Namespace) -> int:
    if args.compare is not None:
        result = compare(args)
        text = format_comparison(result)
    else:
        result = score(args) if args.davis_root is not None else score_youtube(args)
        text = format_scores(result, args.per_sequence)
    print(json.dumps(result, indent=1) if args.json else text)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_worker_options(parser, args)
    youtube_only = [o for o in ("all_frames", "save_all", "zip") if getattr(args, o)]
    if args.compare is None and args.davis_root is None and args.youtube_root is None:
        parser.error("--davis-root or --youtube-root is required with --engine-dir and --results")
    if youtube_only and args.youtube_root is None:
        parser.error(f"--{youtube_only[0].replace('_', '-')} is for YouTube-VOS: give --youtube-root")
    if args.split is None:
        from ..eval.youtube import SPLIT

        args.split = "val" if args.youtube_root is None else SPLIT
    return run_command(PROG, args, _work, interrupted="interrupted; the PNGs written so far are complete, and the "
                       "same command resumes (finished sequences are skipped)")


if __name__ == "__main__":
    sys.exit(main())
