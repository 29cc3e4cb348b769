"""Score a folder of predicted palette PNGs against a DAVIS-layout dataset.

Layout read (the official one)::

    <root>/JPEGImages/480p/<seq>/<frame>.jpg
    <root>/Annotations/480p/<seq>/<frame>.png    palette PNGs, 0 background, 255 void
    <root>/ImageSets/2017/<split>.txt            one sequence name a line
    <results>/<seq>/<frame>.png                  predictions, palette or grayscale PNGs

Semi-supervised protocol of the official toolkit (``davis2017/evaluation.py``): a
sequence's objects are ids 1..K, K the largest id of its first annotation (void 255
counts as background); every annotated frame except the first and the last is scored;
an object is named ``<seq>_<id>``. Numbers equal the toolkit's; where the toolkit stops
(it calls ``sys.exit`` or crashes) this module raises :class:`DatasetError` or
:class:`ResultsError` whose message names the sequence and frame and the fix.

PNGs are read and written with Pillow (OpenCV expands palette PNGs to colour).
"""

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
from ..runtime.png import read_index_png, write_index_png
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
_TOOLKIT_TOO_MANY = ("the official toolkit stops without scores here ('In your PNG files there "
                     "is an index higher than the number of objects in the sequence!')")


class DatasetError(InputError):
    """The DAVIS root, its split list or one of its sequences is not in the expected layout."""


class ResultsError(DatasetError):
    """The predicted PNGs cannot be scored: missing, wrong size, or unknown object ids."""


# ---------------------------------------------------------------- palette PNGs


def read_label_png(path: str | os.PathLike[str]) -> np.ndarray:
    """The (H, W) uint8 label array of a palette or grayscale PNG, as the toolkit reads it.

    Raises:
        DatasetError: the file is unreadable or stores colour instead of labels.
    """
    try:
        return read_index_png(path).labels
    except InputError as exc:
        raise DatasetError(str(exc)) from exc


def write_palette_png(path: str | os.PathLike[str], labels: np.ndarray) -> None:
    """Write (H, W) integer labels in [0, 255] as a DAVIS palette PNG, atomically."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise InputError(f"labels must be an (H, W) integer array, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise InputError(f"labels must lie in [0, 255] for a palette PNG, got [{labels.min()}, {labels.max()}]")
    write_index_png(path, labels.astype(np.uint8))


# ---------------------------------------------------------------- dataset layout


@dataclass(frozen=True)
class SequenceFiles:
    """One sequence's annotated frames, all of one size."""

    name: str
    frames: tuple[str, ...]  # annotation file stems, sorted ("00000", "00001", ...)
    annotations: tuple[Path, ...]  # one per frame
    size: tuple[int, int]  # (H, W)


def check_root(root: Path, split: str, resolution: str = RESOLUTION) -> None:
    """Raise DatasetError naming the first folder or file of the layout that is missing."""
    expected = [root, root / "JPEGImages" / resolution, root / "Annotations" / resolution,
                root / "ImageSets" / "2017", root / "ImageSets" / "2017" / f"{split}.txt"]
    if root.is_file():
        raise DatasetError(f"DAVIS root {root} is a file; pass the folder that contains JPEGImages")
    for path in expected:
        if not path.exists():
            raise DatasetError(
                f"DAVIS root {root}: {path} is missing; the root must hold "
                f"JPEGImages/{resolution}/<seq>/*.jpg, Annotations/{resolution}/<seq>/*.png and "
                f"ImageSets/2017/{split}.txt (download DAVIS 2017 trainval, or pass the folder "
                "that contains JPEGImages)"
            )


def read_split(root: Path, split: str) -> list[str]:
    """Sequence names of ``ImageSets/2017/<split>.txt``: blank lines and repeats dropped; never empty."""
    path = root / "ImageSets" / "2017" / f"{split}.txt"
    names = list(dict.fromkeys(s.strip() for s in path.read_text().splitlines() if s.strip()))
    if not names:
        raise DatasetError(f"DAVIS root {root}: the split list {path} names no sequence; give a split with "
                           "one sequence name a line")
    return names


def dataset_folders(root: Path) -> list[Path]:
    """The folders of a DAVIS root that are inputs: no output may be written into them."""
    return [root / "JPEGImages", root / "Annotations", root / "ImageSets"]


def _image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image, from its header."""
    from PIL import Image

    with Image.open(path) as img:
        return img.size[1], img.size[0]


def sequence_files(root: Path, name: str, resolution: str = RESOLUTION) -> SequenceFiles:
    """List and check one sequence: every image annotated, one size for all.

    Raises:
        DatasetError: no images, no first-frame annotation, an image without
            annotation, or images and annotations of different sizes.
    """
    images = sorted((root / "JPEGImages" / resolution / name).glob("*.jpg"))
    anns = sorted((root / "Annotations" / resolution / name).glob("*.png"))
    where = f"DAVIS root {root}, sequence '{name}'"
    if not images:
        raise DatasetError(f"{where}: no JPEGImages/{resolution}/{name}/*.jpg; check the split "
                           "list names sequences that exist")
    stems = {p.stem for p in anns}
    if images[0].stem not in stems:
        raise DatasetError(f"{where}: frame {images[0].stem} has no first annotation "
                           f"Annotations/{resolution}/{name}/{images[0].stem}.png; the first "
                           "frame's mask defines the objects, add it")
    missing = [p.stem for p in images if p.stem not in stems]
    if missing:
        raise DatasetError(f"{where}: {len(missing)} frames have no annotation, first "
                           f"{missing[:5]}; the toolkit scores every frame, add their PNGs")
    size = _image_size(anns[0])
    for path in [*images, *anns]:
        if _image_size(path) != size:
            raise DatasetError(f"{where}: {path.name} is {_image_size(path)} (H, W) but "
                               f"{anns[0].name} is {size}; all frames of a sequence must share "
                               "one size")
    return SequenceFiles(name, tuple(p.stem for p in anns), tuple(anns), size)


# ---------------------------------------------------------------- scoring


@dataclass(frozen=True)
class ObjectResult:
    """Scores of one object: per-frame values over the scored frames and their statistics."""

    sequence: str
    object_id: int
    frames: tuple[str, ...]  # scored frames: all annotated frames but the first and last
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


def score_frame(gt: np.ndarray, pred: np.ndarray, num_objects: int,
                bound_th: float = BOUND_TH) -> tuple[np.ndarray, np.ndarray]:
    """J and F of objects 1..K in one frame.

    Args:
        gt: (H, W) integer annotation; void (255) and ids above K are background to
            every object.
        pred: (H, W) integer prediction; ids above K are not checked here.
        num_objects: K.

    Returns:
        j, f: (K,) float64 each.
    """
    j, f = np.zeros(num_objects), np.zeros(num_objects)
    for k in range(1, num_objects + 1):
        gt_k, pred_k = gt == k, pred == k  # (H, W) bool
        j[k - 1] = region_similarity(gt_k, pred_k)
        f[k - 1] = boundary_f_measure(gt_k, pred_k, bound_th)
    return j, f


def object_results(sequence: str, frames: Sequence[str], j: np.ndarray,
                   f: np.ndarray) -> list[ObjectResult]:
    """Per-object results from (K, T') per-frame J and F of the scored frames."""
    return [ObjectResult(sequence, k + 1, tuple(frames), j[k], f[k], statistics(j[k]),
                         statistics(f[k])) for k in range(j.shape[0])]


def score_sequence(name: str, gt: np.ndarray, pred: np.ndarray,
                   bound_th: float = BOUND_TH) -> list[ObjectResult]:
    """Score an in-memory sequence, e.g. the runtime's output, as the toolkit would.

    Raises InputError for arrays of the wrong shape and ResultsError for a predicted id
    above the first annotation's largest.

    Args:
        name: sequence name used in the result names.
        gt: (T, H, W) integer annotations, T >= 3.
        pred: (T, H, W) integer predictions; frames 0 and T-1 are not scored.
    """
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.ndim != 3 or gt.shape[0] < 3:
        raise InputError(f"sequence '{name}': ground truth must be (T, H, W) with T >= 3 "
                         f"(the first and last frames are not scored), got {gt.shape}")
    if pred.shape != gt.shape:
        raise InputError(f"sequence '{name}': prediction {pred.shape} != ground truth "
                         f"{gt.shape}; predict every frame at the annotation's size")
    k = count_objects(gt[0])
    frames = [f"{t:05d}" for t in range(1, gt.shape[0] - 1)]
    j, f = np.zeros((k, len(frames))), np.zeros((k, len(frames)))
    for i, t in enumerate(range(1, gt.shape[0] - 1)):
        _check_labels(pred[t], k, f"sequence '{name}', frame {t}")
        j[:, i], f[:, i] = score_frame(gt[t], pred[t], k, bound_th)
    return object_results(name, frames, j, f)


def _check_labels(pred: np.ndarray, num_objects: int, where: str) -> None:
    """Raise ResultsError when a prediction holds an id above the first frame's K."""
    top = int(pred.max()) if pred.size else 0
    if top > num_objects:
        raise ResultsError(
            f"{where}: predicted id {top} but the first annotation has {num_objects} objects "
            f"(ids 1..{num_objects}); {_TOOLKIT_TOO_MANY}. Write 0 for background and only "
            "the first frame's ids"
        )


def _read_prediction(results: Path, seq: SequenceFiles, frame: str, k: int) -> np.ndarray:
    """(H, W) predicted labels of one frame, checked against the sequence."""
    path = results / seq.name / f"{frame}.png"
    where = f"results {results}, sequence '{seq.name}', frame {frame}"
    try:
        pred = read_label_png(path)
    except FileNotFoundError as err:
        raise ResultsError(f"{where}: {path} not found; the toolkit needs one PNG per "
                           "annotated frame (except the first and last), named as the "
                           "annotation") from err
    except DatasetError as err:
        raise ResultsError(f"{where}: {err}") from err
    if pred.shape != seq.size:
        raise ResultsError(f"{where}: prediction is {pred.shape} (H, W) but the annotation "
                           f"is {seq.size}; write masks at the annotation's resolution")
    _check_labels(pred, k, where)
    return pred


def evaluate_sequence(seq: SequenceFiles, results: Path,
                      bound_th: float = BOUND_TH) -> list[ObjectResult]:
    """Score one sequence's predicted PNGs, frame by frame (one frame in memory)."""
    if len(seq.frames) < 3:
        raise DatasetError(f"sequence '{seq.name}' has {len(seq.frames)} annotated frames; "
                           "the toolkit scores all but the first and last, so it needs >= 3")
    first = read_label_png(seq.annotations[0])
    k = count_objects(first)
    if k == 0:
        log.warning("sequence %s: first annotation has no object; it adds no rows", seq.name)
    scored = seq.frames[1:-1]
    j, f = np.zeros((k, len(scored))), np.zeros((k, len(scored)))
    for i, (frame, ann) in enumerate(zip(scored, seq.annotations[1:-1], strict=True)):
        pred = _read_prediction(results, seq, frame, k)
        j[:, i], f[:, i] = score_frame(read_label_png(ann), pred, k, bound_th)
    log.debug("sequence %s: %d objects, %d frames scored", seq.name, k, len(scored))
    return object_results(seq.name, scored, j, f)


def _check_results_present(results: Path, seqs: Iterable[SequenceFiles]) -> None:
    """Fail before scoring when a prediction folder or PNG is missing."""
    if not results.is_dir():
        what = "is not a folder" if results.exists() else "does not exist"
        raise ResultsError(f"results folder {results} {what}; pass the folder that "
                           "holds one sub-folder of PNGs per sequence")
    for seq in seqs:
        missing = [fr for fr in seq.frames[1:-1] if not (results / seq.name / f"{fr}.png").exists()]
        if missing:
            raise ResultsError(
                f"results {results}, sequence '{seq.name}': {len(missing)} predicted PNGs "
                f"missing, first {results / seq.name / (missing[0] + '.png')}; write one PNG "
                "per annotated frame (the first and last may be omitted)")


def evaluate(davis_root: str | os.PathLike[str], results: str | os.PathLike[str],
             split: str = "val", sequences: Sequence[str] | None = None,
             resolution: str = RESOLUTION, bound_th: float = BOUND_TH) -> Evaluation:
    """Score ``<results>/<seq>/<frame>.png`` against a DAVIS root, as the toolkit does.

    Args:
        davis_root: folder holding JPEGImages, Annotations and ImageSets.
        results: folder holding one sub-folder of predicted PNGs per sequence.
        split: name of ``ImageSets/2017/<split>.txt``.
        sequences: score only these (default: every sequence of the split, in its order).
    """
    root, results = Path(davis_root), Path(results)
    check_root(root, split, resolution)
    names = list(dict.fromkeys(sequences)) if sequences is not None else read_split(root, split)
    if not names:
        raise DatasetError("sequences: the list is empty; name at least one sequence to score")
    seqs = [sequence_files(root, name, resolution) for name in names]
    _check_results_present(results, seqs)
    objects = [obj for seq in seqs for obj in evaluate_sequence(seq, results, bound_th)]
    scores = global_scores([o.j_stats for o in objects], [o.f_stats for o in objects])
    log.info("%s: %d sequences, %d objects, J&F-Mean %.3f", split, len(seqs), len(objects),
             scores.jf_mean)
    return Evaluation(split, tuple(objects), scores)


# ---------------------------------------------------------------- the toolkit's CSVs


def _fmt(x: float) -> str:
    """pandas ``to_csv(float_format="%.3f")`` of one float: NaN is written empty."""
    return "" if np.isnan(x) else f"{x:.3f}"


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Write a CSV atomically (temporary file in the same folder, then os.replace)."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_atomic(path, buf.getvalue().encode())


def write_csvs(evaluation: Evaluation, out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``global_results-<split>.csv`` and ``per-sequence_results-<split>.csv``.

    Same columns, row order and number formatting as the toolkit's
    ``evaluation_method.py``. Existing files are replaced (the toolkit would instead
    reuse them and not recompute).

    Returns:
        The paths of the global and the per-sequence CSV.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    g_path = out / f"global_results-{evaluation.split}.csv"
    s_path = out / f"per-sequence_results-{evaluation.split}.csv"
    _write_csv(g_path, GLOBAL_COLUMNS, [[_fmt(x) for x in evaluation.scores.row()]])
    rows = [(o.name, _fmt(o.j_stats.mean), _fmt(o.f_stats.mean)) for o in evaluation.objects]
    _write_csv(s_path, SEQUENCE_COLUMNS, rows)
    return g_path, s_path
