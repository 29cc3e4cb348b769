"""simvos-segment: segment the objects of a video's annotations (the first frame's mask, and masks of later
frames where objects join or are corrected) in every frame, with the graphs of an export folder
(simvos-export). Writes one palette PNG per frame (DAVIS layout), optionally an overlay video, and prints a
summary (frames, objects, ms/frame)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from ..errors import InputError
from ..io import Owner, check_not_input, claim_and_clear
from ..runtime.backends import AUTO, BACKENDS, backend_options
from .common import EXIT_OK, add_output_options, command_parser, flag, run_command

if TYPE_CHECKING:
    from ..runtime.png import IndexImage
    from ..runtime.video import Video
    from ..runtime.video_io import FrameSource

PROG = "simvos-segment"


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(PROG, __doc__)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--engine-dir", type=Path, metavar="DIR",
                       help="export folder written by simvos-export (manifest.json and the graphs)")
    where.add_argument("--server", metavar="HOST:PORT[,HOST:PORT...]",
                       help="segment through simvos-serve instead, at its gRPC port (default 8001); with several "
                       "servers the video is placed on one and moved to another if that one fails; --backend and "
                       "--threads are the server's then")
    p.add_argument("--input", type=Path, required=True, metavar="VIDEO_OR_FOLDER",
                   help="a folder of frames (.jpg/.jpeg/.png, in natural name order: 2 before 10) or a video "
                   "file OpenCV can read")
    masks = p.add_mutually_exclusive_group(required=True)
    masks.add_argument("--mask", type=Path, action="append", metavar="FRAME.png",
                       help="an index mask: a palette PNG (as DAVIS annotations) or an 8-bit grayscale PNG of ids "
                       "(0 states nothing, objects are ids 1..255), at the frames' size, named after the frame it "
                       "annotates (00000.png for a video's first frame); repeat it for later frames, where new ids "
                       "join and known ids are corrected. A single mask named after no frame is the first frame's")
    masks.add_argument("--masks", type=Path, metavar="DIR",
                       help="a folder of such masks (*.png), each named after the frame it annotates")
    p.add_argument("--out", type=Path, required=True, metavar="OUTDIR",
                   help="output folder: one palette PNG per frame, named after the frame (00000.png, ... for a "
                   "video), with the mask's ids and palette, each written atomically; only a new or empty folder, "
                   "or one of an earlier simvos-segment run (its old masks removed first), is written")
    flag(p, "--force", text="replace the masks of another video in --out")
    p.add_argument("--overlay", type=Path, metavar="OUT.mp4",
                   help="also write an MP4 (mp4v: an odd last row or column is dropped) of the masks blended in")
    p.add_argument("--backend", choices=(AUTO, *BACKENDS), default=AUTO,
                   help="auto: TensorRT when installed, on a GPU, with engines built for it (simvos-build), else "
                   "ONNX Runtime; torch needs the 'torch' extra and the exported checkpoint")
    p.add_argument("--threads", type=int, default=None,
                   help="ONNX Runtime intra-op threads per graph (default: all cores)")
    flag(p, "--bgr", default=True, text="decoded frames are in OpenCV's BGR order; --no-bgr passes the channels as "
         "they are (for files stored with red and blue swapped)")
    flag(p, "--json", text="print the summary as JSON instead of one line")
    add_output_options(p, json=False, progress=True)
    return p


class Progress:
    """A progress line on a stream: rewritten in place on a terminal, a line every 5 s otherwise."""

    def __init__(self, total: int, stream: TextIO, enabled: bool) -> None:
        self.total, self.stream, self.enabled = total, stream, enabled
        self.tty = enabled and stream.isatty()
        self.t0 = self.last = time.perf_counter()
        self.shown = 0

    def update(self, done: int, final: bool = False) -> None:
        """Show ``done`` frames when due; ``final`` also ends the line on a terminal."""
        now = time.perf_counter()
        if self.enabled and done != self.shown and (final or now - self.last >= (0.2 if self.tty else 5.0)):
            self.last, self.shown = now, done
            fps = done / max(now - self.t0, 1e-9)
            total = f"/{self.total}" if self.total else ""
            line = f"{PROG}: {done}{total} frames, {fps:.1f} frames/s"
            self.stream.write("\r" + line if self.tty else line + "\n")
            self.stream.flush()
        if final and self.tty and self.shown:
            self.stream.write("\n")


def segment(args: argparse.Namespace) -> int:
    """Segment ``args.input``, then print the summary."""
    from ..runtime import VideoSegmenter
    from ..runtime.png import davis_palette
    from ..runtime.video_io import FrameSource, OverlayWriter, segment_to_folder

    mask_files = sorted(args.masks.glob("*.png")) if args.masks else args.mask
    if not mask_files:
        raise InputError(f"--masks {args.masks}: no .png mask in this folder")
    source = FrameSource(args.input, exclude=mask_files)
    annotations = read_annotations(mask_files, source)
    first = next(iter(annotations.values()))
    palette = first.palette if first.palette is not None else davis_palette()
    inputs = (args.input, *mask_files, args.engine_dir)
    if args.overlay:
        check_not_input(args.overlay, inputs, "--overlay")
    owner = Owner(PROG, f"video {args.input.resolve()}")
    claim_and_clear(args.out, owner, "*.png", inputs=inputs, force=args.force, resume=False)
    options = backend_options(args.backend, threads=args.threads)
    with contextlib.ExitStack() as stack:
        if args.server:
            from ..serve import SegmentationClient

            client = stack.enter_context(SegmentationClient(args.server))
            session: Video = stack.enter_context(client.video())
            backend = f"simvos-serve at {args.server}"
        else:
            seg = stack.enter_context(VideoSegmenter.open(args.engine_dir, args.backend, **options))
            session, backend = seg.video(), seg.backend.name
        overlay = stack.enter_context(OverlayWriter(args.overlay, source.fps or 24, palette)) if args.overlay else None
        progress = Progress(source.count, sys.stderr, args.progress)
        masks = {name: annotation.labels for name, annotation in annotations.items()}  # loses the masks used
        done = segment_to_folder(session, source, masks, args.out, palette, bgr=args.bgr, overlay=overlay,
                                 progress=progress.update)
        progress.update(done.frames, final=True)
        objects = len(session.object_ids) if len(masks) < len(annotations) else 0
    if masks:
        raise InputError(f"masks {sorted(masks)} name no frame of {args.input} (it has {done.frames} frames); "
                         "name each mask after the frame it annotates")
    ms = np.array(done.step_seconds) * 1e3
    summary = {"frames": done.frames, "objects": objects, "backend": backend,
               "ms_per_frame_mean": float(ms.mean()) if ms.size else None,
               "ms_per_frame_p90": float(np.percentile(ms, 90)) if ms.size else None,
               "out": str(args.out), "overlay": str(args.overlay) if args.overlay else None}
    print(json.dumps(summary, indent=1) if args.json else format_summary(summary))
    return EXIT_OK


def read_annotations(files: list[Path], source: FrameSource) -> dict[str, IndexImage]:
    """The masks by the name of the frame they annotate, in frame order. A single mask named after no frame
    annotates the first; a folder's frames are known up front, so a mask naming none of them is refused here."""
    from ..runtime.png import read_index_png
    from ..runtime.video_io import natural_key

    names = [f.stem for f in source.files] if source.files is not None else None
    if len(files) == 1:
        stem = files[0].stem
        named_after_a_frame = stem in names if names is not None else stem.isdigit()
        if not named_after_a_frame:
            first = names[0] if names is not None else f"{0:05d}"
            return {first: read_index_png(files[0])}
    stems = [f.stem for f in files]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise InputError(f"masks: several masks annotate frames {twice}; give one mask per frame")
    if names is not None:
        unknown = sorted(set(stems) - set(names))
        if unknown:
            raise InputError(f"masks {unknown} name no frame of {source.path}; name each mask after the frame it "
                             f"annotates (its frames are {names[0]} .. {names[-1]})")
        order = {n: i for i, n in enumerate(names)}
        files = sorted(files, key=lambda f: order[f.stem])
    else:
        files = sorted(files, key=lambda f: natural_key(f.name))
    return {f.stem: read_index_png(f) for f in files}


def format_summary(s: dict[str, Any]) -> str:
    timing = ("no propagated frame" if s["ms_per_frame_mean"] is None else
              f"{s['ms_per_frame_mean']:.1f} ms/frame mean, {s['ms_per_frame_p90']:.1f} ms p90")
    return (f"{PROG}: {s['frames']} frames, {s['objects']} objects, {timing} ({s['backend']}, frames after "
            f"the first); masks in {s['out']}" + (f", overlay {s['overlay']}" if s["overlay"] else ""))


def main(argv: list[str] | None = None) -> int:
    return run_command(PROG, build_parser().parse_args(argv), segment,
                       interrupted="interrupted; the PNGs written so far are complete")


if __name__ == "__main__":
    sys.exit(main())
