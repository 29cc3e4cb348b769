"""YouTube-VOS (the 2018/2019 layout): segment a split whose objects join at the frame where they first appear,
write the evaluation server's ``Annotations`` folder and zip, and score J&F where ground truth exists (layout,
protocol and choices: ``README.md`` beside this file)."""

from __future__ import annotations

import json
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import processing
from ..errors import InputError
from ..io import claim_and_clear, open_atomic
from ..runtime.png import read_index_png
from ..runtime.segmenter import VideoSegmenter
from ..runtime.video_io import named_frames, natural_key, segment_to_folder
from .davis import Evaluation, ObjectResult, image_size, read_prediction
from .metrics import BOUND_TH, GlobalScores, boundary_f_measure, global_scores, region_similarity, statistics
from .run import Progress, SequenceRun, fresh_folder, results_owner, run_all, run_or_skip

log = logging.getLogger(__name__)

SPLIT = "valid"
META = "meta.json"
FRAMES = "JPEGImages"  # the folder of frames, one folder per video
ANNOTATIONS = "Annotations"  # the folder of masks, in the dataset and in the results (and the zip)


@dataclass(frozen=True)
class VideoFiles:
    """One video's files, checked: frame stems are the JPEG names (``00000``, ``00005``, ...)."""

    name: str
    where: str  # the start of an error message about the video
    listed: tuple[str, ...]  # the frames of <split>/JPEGImages/<video>, in order: the frames saved and scored
    frames: tuple[Path, ...]  # the JPEGs segmented, in order (every frame with all_frames, else the listed ones)
    annotations: dict[str, Path]  # annotated frame -> its PNG, in frame order

    def saved(self, save_all: bool) -> list[str]:
        """The frames a run writes: the listed ones, or with ``save_all`` every frame segmented."""
        return [p.stem for p in self.frames] if save_all else list(self.listed)


@dataclass(frozen=True)
class YouTubeVOS:
    """One checked split of a YouTube-VOS root: ``<root>/<split>/JPEGImages/<video>/*.jpg`` (every 5th frame),
    ``<root>/<split>/Annotations/<video>/*.png`` and ``<root>/<split>/meta.json`` (``open_youtube``)."""

    root: Path
    split: str
    all_frames: Path | None  # every frame of each video, <all_frames>/<video>/*.jpg (valid_all_frames)
    files: dict[str, VideoFiles]  # the videos of meta.json, sorted by name

    @property
    def folder(self) -> Path:
        return self.root / self.split

    @property
    def videos(self) -> list[str]:
        return list(self.files)

    def inputs(self) -> list[Path | None]:
        """The folders no output may be written into."""
        return [self.folder, self.all_frames]

    def frames_segmented(self) -> str:
        """Which frames a run segments: with the export and backend, what decides the predictions."""
        return f"YouTube-VOS {self.split}, {'every frame' if self.all_frames else 'the listed frames'}"


def _jpegs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.jpg"), key=lambda p: natural_key(p.name))


def _read_videos(meta: Path) -> list[str]:
    """The video names of ``meta.json``, sorted."""
    expected = 'expected {"videos": {"<video>": {"objects": {...}}}} as YouTube-VOS ships it'
    try:
        videos = json.loads(meta.read_text())["videos"]
    except (OSError, ValueError, LookupError, TypeError) as exc:
        raise InputError(f"{meta} cannot be read as the split's meta.json ({exc}); {expected}") from exc
    if not isinstance(videos, dict) or not videos:
        raise InputError(f"{meta} lists no video; {expected}")
    return sorted(videos)


def _all_frames_folder(folder: Path, videos: list[str]) -> Path:
    """The folder holding ``<video>/*.jpg`` for every video: ``folder`` or its ``JPEGImages``."""
    if not (folder / videos[0]).is_dir() and (folder / FRAMES / videos[0]).is_dir():
        folder = folder / FRAMES  # valid_all_frames itself was given
    missing = [v for v in videos if not (folder / v).is_dir()]
    if missing:
        raise InputError(f"all-frames folder {folder}: no folder for {len(missing)} videos of meta.json, first "
                         f"'{missing[0]}'; pass valid_all_frames/JPEGImages of the same split (<DIR>/<video>/*.jpg)")
    return folder


def open_youtube(root: str | os.PathLike[str], split: str = SPLIT,
                 all_frames: str | os.PathLike[str] | None = None) -> YouTubeVOS:
    """Check the layout of ``<root>/<split>`` (and of ``all_frames``) and every video of its meta.json, so that
    a bad video fails before anything is segmented or written."""
    root = Path(root)
    layout = (f"the root must hold {split}/JPEGImages/<video>/*.jpg, {split}/Annotations/<video>/*.png and "
              f"{split}/{META} (pass the folder that holds the split folders, and --split for another split)")
    if root.is_file():
        raise InputError(f"YouTube-VOS root {root} is a file; {layout}")
    for path in (root / split / FRAMES, root / split / ANNOTATIONS, root / split / META):
        if not path.exists():
            raise InputError(f"YouTube-VOS root {root}: {path} is missing; {layout}")
    videos = _read_videos(root / split / META)
    missing = [v for v in videos if not (root / split / FRAMES / v).is_dir()]
    if missing:
        raise InputError(f"YouTube-VOS root {root}: {len(missing)} videos of {split}/{META} have no folder in "
                         f"{split}/JPEGImages, first '{missing[0]}'; the split is incomplete: extract it again")
    every = None if all_frames is None else _all_frames_folder(Path(all_frames), videos)
    files = {name: _video_files(root, split, every, name) for name in videos}
    return YouTubeVOS(root, split, every, files)


def _video_files(root: Path, split: str, all_frames: Path | None, name: str) -> VideoFiles:
    """List and check one video of ``<root>/<split>``: frames present, every annotation on one of them, all of
    one size."""
    folder = root / split
    where = f"YouTube-VOS root {root}, split {split}, video '{name}'"
    listed = _jpegs(folder / FRAMES / name)
    if not listed:
        raise InputError(f"{where}: {folder / FRAMES / name} holds no JPEG frame; extract the split again")
    frames = listed if all_frames is None else _jpegs(all_frames / name)
    stems = {p.stem for p in frames}
    absent = [p.stem for p in listed if p.stem not in stems]
    if absent:
        raise InputError(f"{where}: {len(absent)} of its listed frames are not in the all-frames folder "
                         f"{all_frames}, first {absent[0]}; pass the all-frames folder of the same split")
    anns = sorted((folder / ANNOTATIONS / name).glob("*.png"), key=lambda p: natural_key(p.name))
    if not anns:
        raise InputError(f"{where}: no annotation in {folder / ANNOTATIONS / name}; give each object's mask "
                         "as <frame>.png on the frame where it first appears")
    stray = [p for p in anns if p.stem not in stems]
    if stray:
        raise InputError(f"{where}: annotation {stray[0]} is for frame {stray[0].stem}, which is not among the "
                         f"video's {len(frames)} frames ({frames[0].stem}..{frames[-1].stem}); name each PNG "
                         "after the frame it annotates")
    size = image_size(frames[0])
    for path in anns:
        if image_size(path) != size:
            raise InputError(f"{where}: annotation {path} is {image_size(path)} (H, W) but frame "
                             f"{frames[0].stem} is {size}; give masks at the frames' size")
    return VideoFiles(name, where, tuple(p.stem for p in listed), tuple(frames), {p.stem: p for p in anns})


@dataclass(frozen=True)
class FirstMasks:
    """What a video's annotations give the model: for each annotated frame where objects first appear, the
    (H, W) uint8 labels of only those objects (an object's later annotations are ground truth, never input)."""

    masks: dict[str, np.ndarray]  # frame -> the objects that first appear there, in frame order
    palette: np.ndarray | None  # (P, 3) uint8 of the first annotation (None if grayscale)
    revisited: bool  # some object is annotated again after its first frame (ground truth, as in train)


def first_masks(files: VideoFiles) -> FirstMasks:
    """Read the annotations of ``files``."""
    masks: dict[str, np.ndarray] = {}
    seen: list[int] = []
    palette, revisited = None, False
    for i, (stem, path) in enumerate(files.annotations.items()):
        try:
            ann = read_index_png(path)
        except InputError as exc:
            raise InputError(f"{files.where}: {exc}") from exc
        if i == 0:
            palette = ann.palette
        objects = processing.object_ids(ann.labels)
        new = np.setdiff1d(objects, seen)  # ids first seen here
        revisited = revisited or len(new) < len(objects)  # some object was annotated before
        if new.size:
            masks[stem] = np.where(np.isin(ann.labels, new), ann.labels, 0).astype(np.uint8)
            seen += new.tolist()
    return FirstMasks(masks, palette, revisited)


def segment_video(segmenter: VideoSegmenter, ds: YouTubeVOS, name: str, out: Path, *, force: bool = False,
                  save_all: bool = False) -> SequenceRun:
    """Segment one video and write ``<out>/Annotations/<video>/<frame>.png`` for its listed frames (every frame
    with ``save_all``); skipped when they are all present, unless ``force``. A unit of work on its own: it
    reads only the dataset and writes only this video's folder."""
    files = ds.files[name]
    folder = out / ANNOTATIONS / name
    saved = files.saved(save_all)
    outputs = [folder / f"{stem}.png" for stem in saved]
    return run_or_skip(name, outputs, force, lambda: _segment(segmenter, files, folder, set(saved)))


def _segment(segmenter: VideoSegmenter, files: VideoFiles, folder: Path, saved: set[str]) -> int:
    """Segment every frame of ``files``: all 0 before the first object, then each object from its first mask
    (the first via ``start``, later ones joining through ``step``); write the ``saved`` frames."""
    given = first_masks(files)
    if not given.masks:
        log.warning("%s: no object in its annotations; writing empty predictions", files.where)
    try:
        segment_to_folder(segmenter.video(), named_frames(files.frames), dict(given.masks), fresh_folder(folder),
                          given.palette, keep=saved)
    except InputError as exc:
        raise InputError(f"{files.where}, {exc}") from exc
    return len(files.frames)


def segment_youtube(segmenter: VideoSegmenter, ds: YouTubeVOS, out: str | os.PathLike[str], *, force: bool = False,
                    save_all: bool = False, progress: Progress | None = None) -> list[SequenceRun]:
    """``segment_video`` for every video of ``ds``; the results folder is claimed as for DAVIS (its record names
    the export, backend and frames segmented). One record per video."""
    out = Path(out)
    owner = results_owner(segmenter, ds.frames_segmented())
    claim_and_clear(out, owner, f"{ANNOTATIONS}/*/*.png", inputs=[*ds.inputs(), segmenter.backend.folder], force=force)
    return run_all(ds.videos,
                   lambda name: segment_video(segmenter, ds, name, out, force=force, save_all=save_all), progress)


def has_ground_truth(files: VideoFiles) -> bool:
    """Whether the annotations are ground truth to score against (the train split's layout): every listed frame
    from the first annotated one on is annotated, and some object is annotated again after its first frame
    (in valid, a video whose objects appear one per listed frame is annotated on every frame too)."""
    first = natural_key(next(iter(files.annotations)))
    dense = all(stem in files.annotations for stem in files.listed if natural_key(stem) >= first)
    return dense and first_masks(files).revisited


def _check_present(results: Path, files: list[VideoFiles], what: str) -> None:
    """Fail before reading any prediction when one of the listed frames' PNGs is missing."""
    if not (results / ANNOTATIONS).is_dir():
        raise InputError(f"results folder {results} holds no {ANNOTATIONS} folder; pass the folder a YouTube-VOS "
                         f"run wrote (<DIR>/{ANNOTATIONS}/<video>/<frame>.png)")
    for f in files:
        missing = [s for s in f.listed if not (results / ANNOTATIONS / f.name / f"{s}.png").is_file()]
        if missing:
            raise InputError(f"results {results}, video '{f.name}': {len(missing)} predicted PNGs missing, first "
                             f"{results / ANNOTATIONS / f.name / missing[0]}.png; {what} needs every listed frame")


def score_video(files: VideoFiles, results: Path, bound_th: float = BOUND_TH) -> list[ObjectResult]:
    """J and F of each object of a video with ground truth over the listed frames after its first appearance
    (an object first seen on the last listed frame has none and gives no result)."""
    seen: list[int] = []  # the objects annotated before the frame
    scored: dict[int, list[str]] = {}  # object -> the listed frames it is scored on
    j: dict[int, list[float]] = {}
    f: dict[int, list[float]] = {}
    for stem, path in files.annotations.items():  # frame order; every listed frame from the first one is here
        gt = read_index_png(path).labels  # (H, W)
        if seen and stem in files.listed:
            pred = read_prediction(results / ANNOTATIONS / files.name / f"{stem}.png", gt.shape,
                                   f"results {results}, video '{files.name}', frame {stem}")
            for k in seen:
                scored.setdefault(k, []).append(stem)
                j.setdefault(k, []).append(float(region_similarity(gt == k, pred == k)))
                f.setdefault(k, []).append(boundary_f_measure(gt == k, pred == k, bound_th))
        seen += np.setdiff1d(processing.object_ids(gt), seen).tolist()
    return [ObjectResult(files.name, k, tuple(scored[k]), np.array(j[k]), np.array(f[k]),
                         statistics(np.array(j[k])), statistics(np.array(f[k])))
            for k in sorted(scored)]


def evaluate_youtube(ds: YouTubeVOS, results: str | os.PathLike[str], bound_th: float = BOUND_TH) -> Evaluation | None:
    """Score ``<results>/Annotations/<video>/<frame>.png`` of every video with ground truth
    (``has_ground_truth``); None when no video has any (the valid split: the server scores it)."""
    results = Path(results)
    truth = [f for f in ds.files.values() if has_ground_truth(f)]
    if not truth:
        log.info("%s: no video has ground truth beyond its first masks; nothing to score here", ds.folder)
        return None
    _check_present(results, truth, "scoring")
    objects = [o for f in truth for o in score_video(f, results, bound_th)]
    scores = global_scores([o.j_stats for o in objects], [o.f_stats for o in objects])
    log.info("%s: %d videos with ground truth, %d objects, J&F-Mean %.3f", ds.folder, len(truth), len(objects),
             scores.jf_mean)
    return Evaluation(ds.split, tuple(objects), scores)


def write_zip(ds: YouTubeVOS, results: str | os.PathLike[str], path: str | os.PathLike[str]) -> int:
    """Write (atomically) the archive the evaluation server takes: ``Annotations/<video>/<frame>.png`` for the
    listed frames of every video, from ``results``; return the number of PNGs."""
    results, path = Path(results), Path(path)
    files = list(ds.files.values())
    _check_present(results, files, "the server's zip")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_atomic(path) as raw, zipfile.ZipFile(raw, "w") as archive:  # stored: PNGs are compressed already
        for f in files:
            for stem in f.listed:
                name = f"{ANNOTATIONS}/{f.name}/{stem}.png"
                archive.write(results / name, name)
    return sum(len(f.listed) for f in files)


def per_video(evaluation: Evaluation) -> dict[str, GlobalScores]:
    """Each scored video's table (means over its objects, as the global one over all), in video order."""
    videos: dict[str, list[ObjectResult]] = {}
    for o in evaluation.objects:
        videos.setdefault(o.sequence, []).append(o)
    return {v: global_scores([o.j_stats for o in objs], [o.f_stats for o in objs]) for v, objs in videos.items()}
