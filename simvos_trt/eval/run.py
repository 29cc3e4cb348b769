"""Run a segmenter over a DAVIS root, resumably, and compare the CSV files of two scored runs (the results
layout, resuming and the folder's owner record: ``README.md`` beside this file)."""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import Owner, claim_and_clear
from ..runtime.png import read_index_png
from ..runtime.segmenter import VideoSegmenter
from ..runtime.video_io import named_frames, segment_to_folder
from .davis import (
    RESOLUTION,
    SEQUENCE_COLUMNS,
    VOID,
    check_root,
    count_objects,
    csv_paths,
    dataset_folders,
    frame_paths,
    read_split,
    sequence_files,
)
from .metrics import GLOBAL_COLUMNS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SequenceRun:
    """What was done with one sequence (or video): the record of one unit of a dataset run."""

    name: str
    frames: int  # frames segmented; when skipped, the PNGs found
    seconds: float  # wall time of reading, segmenting and writing; 0 when skipped
    skipped: bool  # every PNG was already present

    @property
    def fps(self) -> float | None:
        """Frames per second of the whole loop (read, segment, write), None when skipped."""
        return None if self.skipped else self.frames / max(self.seconds, 1e-9)


#: Called after each sequence with (position 1..total, total, what was done).
Progress = Callable[[int, int, SequenceRun], None]


def results_owner(segmenter: VideoSegmenter, dataset: str = "") -> Owner:
    """The record of a results folder: the export (its graphs' sha256s) and backend, and what else decides
    the predictions (``dataset``: e.g. the frames a YouTube-VOS run segments); empty for DAVIS."""
    return Owner("simvos-eval", owner_source(segmenter.manifest.fingerprint, segmenter.backend.name, dataset))


def owner_source(fingerprint: str, backend: str, dataset: str = "") -> str:
    """``results_owner``'s source, from the export's fingerprint and the backend's name (also for workers)."""
    source = f"export {fingerprint} on {backend}"
    return f"{source}, {dataset}" if dataset else source


def fresh_folder(folder: Path) -> Path:
    """``folder``, created, without the temporary files of an interrupted write."""
    folder.mkdir(parents=True, exist_ok=True)
    for tmp in folder.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    return folder


def run_or_skip(name: str, outputs: list[Path], force: bool, segment: Callable[[], int]) -> SequenceRun:
    """Skip a sequence whose ``outputs`` are all present (unless ``force``), else time ``segment()``, which
    writes them and returns the frames it segmented."""
    if not force and all(p.is_file() for p in outputs):
        run = SequenceRun(name, len(outputs), 0.0, skipped=True)
    else:
        t0 = time.perf_counter()
        frames = segment()
        run = SequenceRun(name, frames, time.perf_counter() - t0, skipped=False)
    log.info("sequence %s: %d frames, %s", name, run.frames,
             "skipped (complete)" if run.skipped else f"{run.fps:.1f} frames/s")
    return run


def run_all(names: list[str], one: Callable[[str], SequenceRun], progress: Progress | None) -> list[SequenceRun]:
    """``one(name)`` for each name in order, reporting each record to ``progress``."""
    runs = []
    for i, name in enumerate(names, start=1):
        runs.append(one(name))
        if progress is not None:
            progress(i, len(names), runs[-1])
    return runs


def segment_sequence(segmenter: VideoSegmenter, root: Path, name: str, out: Path, resolution: str = RESOLUTION) -> int:
    """Segment one sequence from its first annotation (void as background; no object: all background);
    write a PNG per frame, after removing the temporary files of an interrupted write; return the count."""
    frames = frame_paths(root, name, resolution)
    try:
        first = read_index_png(root / "Annotations" / resolution / name / f"{frames[0].stem}.png")
    except InputError as exc:
        raise InputError(f"DAVIS root {root}, sequence '{name}': first annotation: {exc}") from exc
    mask = np.where(first.labels == VOID, 0, first.labels).astype(np.uint8)  # (H, W)
    annotations = {frames[0].stem: mask} if count_objects(mask) else {}
    if not annotations:
        log.warning("sequence %s: first annotation has no object; writing empty predictions", name)
    try:
        segment_to_folder(segmenter.video(), named_frames(frames), annotations, fresh_folder(out / name),
                          first.palette)
    except InputError as exc:
        raise InputError(f"DAVIS root {root}, sequence '{name}', {exc}") from exc
    return len(frames)


def segment_dataset(segmenter: VideoSegmenter, root: str | os.PathLike[str], split: str,
                    out: str | os.PathLike[str], force: bool = False,
                    progress: Progress | None = None) -> list[SequenceRun]:
    """Segment every sequence of ``ImageSets/2017/<split>.txt`` into ``<out>/<seq>/<frame>.png``, after
    checking the whole split; complete sequences are skipped unless ``force``. One record per sequence."""
    root, out = Path(root), Path(out)
    check_root(root, split)
    names = read_split(root, split)
    for name in names:
        sequence_files(root, name)
    owner = results_owner(segmenter)
    claim_and_clear(out, owner, "*/*.png", inputs=[*dataset_folders(root), segmenter.backend.folder], force=force)

    def one(name: str) -> SequenceRun:
        outputs = [out / name / f"{p.stem}.png" for p in frame_paths(root, name)]
        return run_or_skip(name, outputs, force, lambda: segment_sequence(segmenter, root, name, out))

    return run_all(names, one, progress)


@dataclass(frozen=True)
class RunScores:
    """The two CSV files of a scored run, read back (NaN where a field is empty)."""

    folder: Path
    global_row: dict[str, float]  # GLOBAL_COLUMNS -> value
    objects: dict[str, tuple[float, float]]  # "<seq>_<id>" -> (J-Mean, F-Mean), in file order


@dataclass(frozen=True)
class ObjectDelta:
    """J&F of one object in runs A and B; delta = B - A."""

    name: str
    jf_a: float
    jf_b: float

    @property
    def delta(self) -> float:
        return self.jf_b - self.jf_a


@dataclass(frozen=True)
class Comparison:
    """Per-object and global differences between two scored runs (B - A)."""

    a: RunScores
    b: RunScores
    objects: tuple[ObjectDelta, ...]


def _read_csv(path: Path, header: tuple[str, ...]) -> list[list[str]]:
    """Rows of a CSV whose first row must be ``header``."""
    if not path.is_file():
        raise InputError(f"{path} not found; score the run first (simvos-eval --results "
                         f"{path.parent} --davis-root ...), which writes it")
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows or tuple(rows[0]) != header:
        raise InputError(f"{path}: header {rows[0] if rows else []} is not the toolkit's {list(header)}")
    bad = [i for i, row in enumerate(rows[1:], start=2) if len(row) != len(header)]
    if bad:
        raise InputError(f"{path}: line {bad[0]} has not {len(header)} fields")
    return rows[1:]


def _number(text: str, path: Path) -> float:
    """A CSV field as written by ``write_csvs``: %.3f, or empty for NaN."""
    try:
        return math.nan if text == "" else float(text)
    except ValueError as exc:
        raise InputError(f"{path}: {text!r} is not a number") from exc


def read_run(folder: str | os.PathLike[str], split: str = "val") -> RunScores:
    """Read ``global_results-<split>.csv`` and ``per-sequence_results-<split>.csv`` of a run."""
    folder = Path(folder)
    g_path, s_path = csv_paths(folder, split)
    g_rows = _read_csv(g_path, GLOBAL_COLUMNS)
    if len(g_rows) != 1:
        raise InputError(f"{g_path}: {len(g_rows)} rows of scores, expected 1")
    global_row = {c: _number(v, g_path) for c, v in zip(GLOBAL_COLUMNS, g_rows[0], strict=True)}
    objects = {row[0]: (_number(row[1], s_path), _number(row[2], s_path))
               for row in _read_csv(s_path, SEQUENCE_COLUMNS)}
    return RunScores(folder, global_row, objects)


def compare_runs(run_a: str | os.PathLike[str], run_b: str | os.PathLike[str], split: str = "val") -> Comparison:
    """J&F of every object (mean of its J-Mean and F-Mean) in runs A and B, and the global table;
    InputError when a CSV is missing or malformed, or the runs scored different objects."""
    a, b = read_run(run_a, split), read_run(run_b, split)
    only_a = sorted(set(a.objects) - set(b.objects))
    only_b = sorted(set(b.objects) - set(a.objects))
    if only_a or only_b:
        raise InputError(f"runs {a.folder} and {b.folder} scored different objects (only in A: "
                         f"{only_a[:3]}{'...' if len(only_a) > 3 else ''}, only in B: {only_b[:3]}"
                         f"{'...' if len(only_b) > 3 else ''}); compare runs of one dataset and split")
    deltas = tuple(ObjectDelta(name, sum(a.objects[name]) / 2, sum(b.objects[name]) / 2) for name in a.objects)
    return Comparison(a, b, deltas)
