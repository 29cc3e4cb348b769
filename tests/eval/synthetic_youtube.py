"""A tiny synthetic dataset in the YouTube-VOS layout, a test helper: textured shapes (``synthetic_davis``'s)
that first appear at given frames, every 5th frame listed, every frame in ``<split>_all_frames/JPEGImages``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from synthetic_davis import _background, _outline, _render_image, _wanderer

from simvos_trt.eval.metrics import boundary_f_measure, global_scores, region_similarity, statistics
from simvos_trt.runtime.png import write_index_png

STEP = 5  # YouTube-VOS lists every 5th frame
STARTS = ((0, 10, 25), (5, 5, 20))  # per video, the frame where each object (ids 1, 2, ...) first appears
_ATTEMPTS = 50


@dataclass(frozen=True)
class SyntheticVideo:
    """One generated video: its ground truth for every frame (frames are numbered from 0, named ``%05d``)."""

    name: str
    starts: dict[int, int]  # object id -> the frame where it first appears
    labels: np.ndarray  # (T, H, W) uint8 ground truth of every frame

    @property
    def listed(self) -> list[int]:
        return list(range(0, len(self.labels), STEP))

    def first_mask(self, t: int) -> np.ndarray:
        """(H, W) uint8: the objects that first appear at frame t, as annotated there."""
        new = [k for k, s in self.starts.items() if s == t]
        return np.where(np.isin(self.labels[t], new), self.labels[t], 0).astype(np.uint8)


def _render(shapes: list, starts: tuple[int, ...], t: int, height: int, width: int) -> np.ndarray:
    """(H, W) uint8 labels of frame t: the objects that have appeared, later ones in front."""
    labels = np.zeros((height, width), np.uint8)
    for k, (shape, start) in enumerate(zip(shapes, starts, strict=True), start=1):
        if t >= start:
            labels[_outline(shape, t, height, width)] = k
    return labels


def _video(rng: np.random.Generator, frames: int, height: int, width: int, starts: tuple[int, ...]) -> tuple:
    """Shapes and (T, H, W) labels, redrawn until every object shows on the frame where it appears."""
    for _ in range(_ATTEMPTS):
        shapes = [_wanderer(rng, frames, height, width) for _ in starts]
        labels = np.stack([_render(shapes, starts, t, height, width) for t in range(frames)])
        if all((labels[s] == k).any() for k, s in enumerate(starts, start=1)):
            return shapes, labels
    raise ValueError(f"could not place {len(starts)} visible objects in a {height}x{width} frame")


def make_youtube(root: str | os.PathLike[str], split: str = "valid", frames: int = 31, height: int = 48,
                 width: int = 64, starts: tuple[tuple[int, ...], ...] = STARTS, dense: bool = False,
                 seed: int = 0) -> list[SyntheticVideo]:
    """Write one video per entry of ``starts`` (``synthetic-000``, ...; object starts on listed frames) under
    ``<root>/<split>``: JPEGs of the listed frames, annotations (``dense``: every listed frame from the first
    appearance on, as the train split; else each object on its first frame only, as valid) and meta.json;
    every frame under ``<root>/<split>_all_frames/JPEGImages``. The output depends only on ``seed``."""
    root = Path(root)
    made, meta = [], {}
    for i, video_starts in enumerate(starts):
        if any(s % STEP or s >= frames for s in video_starts):
            raise ValueError(f"starts {video_starts}: objects appear on listed frames (multiples of {STEP} < {frames})")
        rng = np.random.default_rng([seed, i])
        name = f"synthetic-{i:03d}"
        shapes, labels = _video(rng, frames, height, width, video_starts)
        video = SyntheticVideo(name, {k: s for k, s in enumerate(video_starts, start=1)}, labels)
        background = _background(rng, height, width)
        folders = [root / split / "JPEGImages" / name, root / split / "Annotations" / name,
                   root / f"{split}_all_frames" / "JPEGImages" / name]
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        for t in range(frames):
            image = _render_image(shapes, labels[t], t, background, rng)  # (H, W, 3) uint8 BGR
            cv2.imwrite(str(folders[2] / f"{t:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
            if t % STEP == 0:
                cv2.imwrite(str(folders[0] / f"{t:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
                if dense and t >= min(video_starts):
                    write_index_png(folders[1] / f"{t:05d}.png", labels[t])
                elif t in video_starts:  # only the objects that first appear here
                    write_index_png(folders[1] / f"{t:05d}.png", video.first_mask(t))
        meta[name] = {"objects": {str(k): {"category": "shape", "frames": [f"{t:05d}" for t in video.listed
                                                                           if (labels[t] == k).any()]}
                                  for k in video.starts}}
        made.append(video)
    (root / split / "meta.json").write_text(json.dumps({"videos": meta}))
    return made


def reference_scores(videos: list[SyntheticVideo], preds: dict[str, dict[int, np.ndarray]]) -> tuple[list[float], dict]:
    """The global row and each object's (J-Mean, F-Mean) ("<video>_<id>") of predictions (video -> frame ->
    (H, W) labels), from the metrics functions over the listed frames after the object's first appearance."""
    j_stats, f_stats, objects = [], [], {}
    for v in videos:
        for k, start in v.starts.items():
            frames = [t for t in v.listed if t > start]
            if not frames:
                continue
            gt, pred = v.labels, preds[v.name]
            j = statistics(np.array([float(region_similarity(gt[t] == k, pred[t] == k)) for t in frames]))
            f = statistics(np.array([boundary_f_measure(gt[t] == k, pred[t] == k) for t in frames]))
            j_stats.append(j)
            f_stats.append(f)
            objects[f"{v.name}_{k}"] = (j.mean, f.mean)
    return list(global_scores(j_stats, f_stats).row()), objects
