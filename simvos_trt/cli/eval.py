"""simvos-eval: score video object segmentation on DAVIS 2017 (semi-supervised J&F, the official toolkit's numbers
and CSV files) of an export folder, of a folder of predictions, or the difference of two runs.

Exit codes: 0 done; 2 bad options, dataset, predictions or export folder; 130 interrupted (the same command resumes)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from ..io import check_not_input
from ..tables import fmt, render
from .common import (
    EXIT_OK,
    add_output_options,
    add_worker_options,
    check_worker_options,
    command_parser,
    flag,
    run_command,
    worker_pool,
)

PROG = "simvos-eval"
INTERRUPTED = ("interrupted; the sequences finished so far are kept (each written whole), and the same "
               "command resumes (finished sequences are skipped)")


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(PROG, __doc__)
    p.add_argument("--davis-root", type=Path, metavar="DIR", help="DAVIS root holding JPEGImages/480p, "
                   "Annotations/480p and ImageSets/2017/<split>.txt (needed with --engine-dir and --results)")
    p.add_argument("--split", default="val", help="split list ImageSets/2017/<split>.txt")
    m = p.add_argument_group("what to score (one of)").add_mutually_exclusive_group(required=True)
    m.add_argument("--engine-dir", type=Path, metavar="DIR", help="export folder: segment the split, then score")
    m.add_argument("--results", type=Path, metavar="DIR", help="predicted palette PNGs <DIR>/<seq>/<frame>.png")
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
    o = p.add_argument_group("output")
    o.add_argument("--out", type=Path, metavar="DIR", help="where the PNGs and CSV files go [default: "
                   "results/<engine-dir name>-<backend>, or the --results folder]")
    flag(o, "--per-sequence", text="also print the J-Mean and F-Mean of every object")
    add_output_options(o, progress=True)
    return p


def _say(args: argparse.Namespace, text: str) -> None:
    if args.progress:
        print(f"{PROG}: {text}", file=sys.stderr, flush=True)


def segment(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """Segment the split with ``args.engine_dir`` on the workers asked for; returns the results folder and a
    summary."""
    from ..batch import SegmenterSpec, VideoRun, davis_plan, segment_videos, videos_per_minute

    def progress(index: int, total: int, run: VideoRun) -> None:
        done = ("skipped, finished earlier (--force redoes it)" if run.skipped
                else f"{run.frames} frames, {run.fps:.1f} frames/s, {run.worker}")
        _say(args, f"[{index}/{total}] {run.name}: {done}")

    plan = davis_plan(args.davis_root, args.split)  # the whole split, before the graphs load
    t0 = time.perf_counter()
    spec = SegmenterSpec(args.engine_dir, args.backend, args.threads, args.device)
    with worker_pool(args, spec) as pool:
        opened = pool.start(plan.task)
        backend = opened.backend
        out = args.out or Path("results") / f"{args.engine_dir.resolve().name}-{backend}"
        _say(args, f"segmenting split {args.split} of {args.davis_root} with {args.engine_dir} ({backend}) "
             f"into {out}")
        runs = segment_videos(plan, pool, opened, out, tool=PROG, force=args.force, progress=progress)
    info = {"engine_dir": str(args.engine_dir), "backend": backend,
            "videos_per_minute": videos_per_minute(runs, time.perf_counter() - t0),
            "sequences": [{"sequence": r.name, "frames": r.frames, "skipped": r.skipped, "seconds": r.seconds,
                           "frames_per_second": r.fps, "worker": r.worker, "attempts": r.attempts} for r in runs]}
    return out, info


def score(args: argparse.Namespace) -> dict[str, Any]:
    """Segment (with --engine-dir) and score; write the CSVs; return the summary."""
    from ..eval.davis import csv_paths, dataset_folders, evaluate, write_csvs
    from ..eval.metrics import GLOBAL_COLUMNS

    results, info = segment(args) if args.engine_dir is not None else (args.results, {})
    out = args.out or results  # segment() already wrote into --out when given
    check_not_input(csv_paths(out, args.split)[0], dataset_folders(args.davis_root))
    _say(args, f"scoring {results}")
    evaluation = evaluate(args.davis_root, results, args.split)
    g_path, s_path = write_csvs(evaluation, out)
    return {"split": args.split, "davis_root": str(args.davis_root), "results": str(results),
            "csv": [str(g_path), str(s_path)], **info,
            "global": dict(zip(GLOBAL_COLUMNS, (_num(x) for x in evaluation.scores.row()), strict=True)),
            "per_sequence": [{"object": o.name, "J-Mean": _num(o.j_stats.mean), "F-Mean": _num(o.f_stats.mean)}
                             for o in evaluation.objects]}


def _num(x: float, digits: int | None = None) -> float | None:
    """For JSON, which has no NaN: null for NaN, else ``x`` (rounded to ``digits``)."""
    return None if math.isnan(x) else x if digits is None else round(x, digits)


def format_scores(s: dict[str, Any], per_sequence: bool) -> str:
    cols = list(s["global"])
    lines = [f"Global results for {s['split']} ({s['results']}):",
             render(cols, [[fmt(s["global"][c], ".3f") for c in cols]])]
    if per_sequence:
        rows = [[o["object"], fmt(o["J-Mean"], ".3f"), fmt(o["F-Mean"], ".3f")] for o in s["per_sequence"]]
        lines += ["", "Per-sequence results:", render(["Sequence", "J-Mean", "F-Mean"], rows)]
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
    result = compare(args) if args.compare is not None else score(args)
    text = format_comparison(result) if args.compare is not None else format_scores(result, args.per_sequence)
    print(json.dumps(result, indent=1) if args.json else text)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_worker_options(parser, args)
    if args.compare is None and args.davis_root is None:
        parser.error("--davis-root is required with --engine-dir and --results")
    return run_command(PROG, args, _work, interrupted=INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
