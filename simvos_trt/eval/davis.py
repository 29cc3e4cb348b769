"""Score a folder of predicted palette PNGs against a DAVIS-layout dataset, as the official toolkit does
(layout, protocol and each point where the toolkit stops: ``README.md`` beside this file)."""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import write_atomic
from ..runtime.png import read_index_png
from .metrics import (
    BOUND_TH,
    GLOBAL_COLUMNS,
    GlobalScores,
    Statistics,
    boundary_f_measure,
    global_scores,
    region_similarity,
    statistics,
)

log = logging.getLogger(__name__)

RESOLUTION = "480p"
VOID = 255
SEQUENCE_COLUMNS = ("Sequence", "J-Mean", "F-Mean")


def read_label_png(path: str | os.PathLike[str]) -> np.ndarray:
    """The (H, W) uint8 labels of a palette or grayscale PNG, as the toolkit reads them (InputError for colour)."""
    return read_index_png(path).labels


@dataclass(frozen=True)
class SequenceFiles:
    """One sequence's annotated frames, all of one size."""

    name: str
    frames: tuple[str, ...]  # annotation file stems, sorted ("00000", "00001", ...)
    annotations: tuple[Path, ...]  # one per frame
    size: tuple[int, int]  # (H, W)


def check_root(root: Path, split: str, resolution: str = RESOLUTION) -> None:
    """Raise InputError naming the first folder or file of the layout that is missing."""
    expected = [root, root / "JPEGImages" / resolution, root / "Annotations" / resolution,
                root / "ImageSets" / "2017", root / "ImageSets" / "2017" / f"{split}.txt"]
    if root.is_file():
        raise InputError(f"DAVIS root {root} is a file; pass the folder that contains JPEGImages")
    for path in expected:
        if not path.exists():
            raise InputError(f"DAVIS root {root}: {path} is missing; the root must hold "
                             f"JPEGImages/{resolution}/<seq>/*.jpg, Annotations/{resolution}/<seq>/*.png and "
                             f"ImageSets/2017/{split}.txt (download DAVIS 2017 trainval, or pass the folder "
                             "that contains JPEGImages)")


def read_split(root: Path, split: str) -> list[str]:
    """Sequence names of ``ImageSets/2017/<split>.txt``: blank lines and repeats dropped; never empty."""
    path = root / "ImageSets" / "2017" / f"{split}.txt"
    names = list(dict.fromkeys(s.strip() for s in path.read_text().splitlines() if s.strip()))
    if not names:
        raise InputError(f"DAVIS root {root}: the split list {path} names no sequence; give a split with "
                         "one sequence name a line")
    return names


def dataset_folders(root: Path) -> list[Path]:
    """The folders of a DAVIS root that are inputs: no output may be written into them."""
    return [root / "JPEGImages", root / "Annotations", root / "ImageSets"]


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image, from its header."""
    from PIL import Image

    with Image.open(path) as img:
        return img.size[1], img.size[0]


def frame_paths(root: Path, name: str, resolution: str = RESOLUTION) -> list[Path]:
    """``JPEGImages/<resolution>/<name>/*.jpg``, sorted (the toolkit's frame order)."""
    return sorted((root / "JPEGImages" / resolution / name).glob("*.jpg"))


def sequence_files(root: Path, name: str, resolution: str = RESOLUTION) -> SequenceFiles:
    """List and check one sequence: images present, the first and every other one annotated, one size."""
    images = frame_paths(root, name, resolution)
    anns = sorted((root / "Annotations" / resolution / name).glob("*.png"))
    where = f"DAVIS root {root}, sequence '{name}'"
    if not images:
        raise InputError(f"{where}: no JPEGImages/{resolution}/{name}/*.jpg; check the split "
                         "list names sequences that exist")
    stems = {p.stem for p in anns}
    if images[0].stem not in stems:
        raise InputError(f"{where}: frame {images[0].stem} has no first annotation "
                         f"Annotations/{resolution}/{name}/{images[0].stem}.png; the first "
                         "frame's mask defines the objects, add it")
    missing = [p.stem for p in images if p.stem not in stems]
    if missing:
        raise InputError(f"{where}: {len(missing)} frames have no annotation, first "
                         f"{missing[:5]}; the toolkit scores every frame, add their PNGs")
    size = image_size(anns[0])
    for path in [*images, *anns]:
        if image_size(path) != size:
            raise InputError(f"{where}: {path.name} is {image_size(path)} (H, W) but "
                             f"{anns[0].name} is {size}; all frames of a sequence must share one size")
    return SequenceFiles(name, tuple(p.stem for p in anns), tuple(anns), size)


@dataclass(frozen=True)
class ObjectResult:
    """Scores of one object: per-frame values over the scored frames and their statistics."""

    sequence: str
    object_id: int
    frames: tuple[str, ...]  # scored frames (DAVIS: all annotated frames but the first and last)
    j: np.ndarray  # (T - 2,) float64
    f: np.ndarray  # (T - 2,) float64
    j_stats: Statistics
    f_stats: Statistics

    @property
    def name(self) -> str:
        """The toolkit's per-sequence row name, ``<seq>_<object id>``."""
        return f"{self.sequence}_{self.object_id}"


@dataclass(frozen=True)
class Evaluation:
    """Every object of every scored sequence, in split order, and the global table."""

    split: str
    objects: tuple[ObjectResult, ...]
    scores: GlobalScores


def count_objects(first_annotation: np.ndarray) -> int:
    """K: the largest id of the first (H, W) annotation, void (255) counting as background."""
    labels = np.where(first_annotation == VOID, 0, first_annotation)
    return int(labels.max()) if labels.size else 0


def read_prediction(path: Path, size: tuple[int, int], where: str) -> np.ndarray:
    """(H, W) predicted labels of one frame, checked against the annotation's ``size`` (its presence is
    checked before scoring starts)."""
    try:
        pred = read_label_png(path)
    except InputError as err:
        raise InputError(f"{where}: {err}") from err
    if pred.shape != size:
        raise InputError(f"{where}: prediction is {pred.shape} (H, W) but the annotation "
                         f"is {size}; write masks at the annotation's resolution")
    return pred


def _read_prediction(results: Path, seq: SequenceFiles, frame: str, k: int) -> np.ndarray:
    """(H, W) predicted labels of one frame, checked against the sequence: its size, and no id above the
    first annotation's K."""
    where = f"results {results}, sequence '{seq.name}', frame {frame}"
    pred = read_prediction(results / seq.name / f"{frame}.png", seq.size, where)
    top = int(pred.max()) if pred.size else 0
    if top > k:
        raise InputError(f"{where}: predicted id {top} but the first annotation has {k} objects "
                         f"(ids 1..{k}); the official toolkit stops without scores here ('In your PNG "
                         "files there is an index higher than the number of objects in the sequence!'). Write 0 "
                         "for background and only the first frame's ids")
    return pred


def evaluate_sequence(seq: SequenceFiles, results: Path, bound_th: float = BOUND_TH) -> list[ObjectResult]:
    """Score one sequence's predicted PNGs, frame by frame (one frame in memory): objects 1..K of the first
    annotation; void and ids above K are background."""
    if len(seq.frames) < 3:
        raise InputError(f"sequence '{seq.name}' has {len(seq.frames)} annotated frames; "
                         "the toolkit scores all but the first and last, so it needs >= 3")
    k = count_objects(read_label_png(seq.annotations[0]))
    if k == 0:
        log.warning("sequence %s: first annotation has no object; it adds no rows", seq.name)
    scored = seq.frames[1:-1]
    j, f = np.zeros((k, len(scored))), np.zeros((k, len(scored)))
    for i, (frame, ann) in enumerate(zip(scored, seq.annotations[1:-1], strict=True)):
        gt = read_label_png(ann)
        pred = _read_prediction(results, seq, frame, k)
        for o in range(k):
            gt_o, pred_o = gt == o + 1, pred == o + 1  # (H, W) bool
            j[o, i] = region_similarity(gt_o, pred_o)
            f[o, i] = boundary_f_measure(gt_o, pred_o, bound_th)
    return [ObjectResult(seq.name, o + 1, scored, j[o], f[o], statistics(j[o]), statistics(f[o]))
            for o in range(k)]


def _check_results_present(results: Path, seqs: Iterable[SequenceFiles]) -> None:
    """Fail before scoring when a prediction folder or PNG is missing."""
    if not results.is_dir():
        what = "is not a folder" if results.exists() else "does not exist"
        raise InputError(f"results folder {results} {what}; pass the folder that "
                         "holds one sub-folder of PNGs per sequence")
    for seq in seqs:
        missing = [fr for fr in seq.frames[1:-1] if not (results / seq.name / f"{fr}.png").exists()]
        if missing:
            raise InputError(f"results {results}, sequence '{seq.name}': {len(missing)} predicted PNGs missing, "
                             f"first {results / seq.name / (missing[0] + '.png')}; write one PNG per annotated "
                             "frame (the first and last may be omitted)")


def evaluate(davis_root: str | os.PathLike[str], results: str | os.PathLike[str],
             split: str = "val", sequences: Sequence[str] | None = None,
             resolution: str = RESOLUTION, bound_th: float = BOUND_TH) -> Evaluation:
    """Score ``<results>/<seq>/<frame>.png`` against a DAVIS root: every sequence of ``split`` (or ``sequences``)."""
    root, results = Path(davis_root), Path(results)
    check_root(root, split, resolution)
    names = list(dict.fromkeys(sequences)) if sequences is not None else read_split(root, split)
    if not names:
        raise InputError("sequences: the list is empty; name at least one sequence to score")
    seqs = [sequence_files(root, name, resolution) for name in names]
    _check_results_present(results, seqs)
    objects = [obj for seq in seqs for obj in evaluate_sequence(seq, results, bound_th)]
    scores = global_scores([o.j_stats for o in objects], [o.f_stats for o in objects])
    log.info("%s: %d sequences, %d objects, J&F-Mean %.3f", split, len(seqs), len(objects), scores.jf_mean)
    return Evaluation(split, tuple(objects), scores)


def _csv_number(x: float) -> str:
    """pandas ``to_csv(float_format="%.3f")`` of one float: NaN is written empty."""
    return "" if np.isnan(x) else f"{x:.3f}"


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    buf = io.StringIO(newline="")
    csv.writer(buf, lineterminator="\n").writerows([header, *rows])
    write_atomic(path, buf.getvalue())


def csv_paths(folder: str | os.PathLike[str], split: str) -> tuple[Path, Path]:
    """The toolkit's ``global_results-<split>.csv`` and ``per-sequence_results-<split>.csv`` in ``folder``."""
    return Path(folder) / f"global_results-{split}.csv", Path(folder) / f"per-sequence_results-{split}.csv"


def write_csvs(evaluation: Evaluation, out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write (replace) the toolkit's two CSV files (``csv_paths``) in ``out_dir``; return their paths."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    g_path, s_path = csv_paths(out_dir, evaluation.split)
    _write_csv(g_path, GLOBAL_COLUMNS, [[_csv_number(x) for x in evaluation.scores.row()]])
    rows = [(o.name, _csv_number(o.j_stats.mean), _csv_number(o.f_stats.mean)) for o in evaluation.objects]
    _write_csv(s_path, SEQUENCE_COLUMNS, rows)
    return g_path, s_path
