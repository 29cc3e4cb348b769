"""A tiny synthetic dataset in the DAVIS 2017 layout, a test helper: K >= 3 textured shapes with an
occlusion (2 hides 1) and a disappearance (3 leaves and comes back); see ``simvos_trt/eval/README.md``."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from simvos_trt.eval.davis import RESOLUTION
from simvos_trt.runtime.png import write_index_png

log = logging.getLogger(__name__)

MAX_OBJECTS = 8
_ATTEMPTS = 50


@dataclass(frozen=True)
class SyntheticSequence:
    """What one generated sequence contains (frames are numbered from 0)."""

    name: str
    num_frames: int
    num_objects: int
    occluded_frames: tuple[int, ...]  # frames where object 2 hides part of object 1
    absent_frames: dict[int, tuple[int, ...]]  # object id -> frames where it is not visible


@dataclass(frozen=True)
class _Shape:
    """One object: its outline, texture and (T, 2) float path of centres (x, y)."""

    kind: str  # "ellipse" or "rect"
    half: tuple[int, int]  # half width, half height in pixels
    angle: float  # degrees
    color: np.ndarray  # (3,) float32 BGR base colour
    freq: np.ndarray  # (2,) float32 stripe frequency along x and y, radians per pixel
    path: np.ndarray  # (T, 2) float64 centres (x, y)


def _check_args(sequences: int, frames: int, height: int, width: int, objects: int) -> None:
    """Raise ValueError naming the first out-of-range argument."""
    checks = [("sequences", sequences, 1), ("frames", frames, 3), ("height", height, 32),
              ("width", width, 32), ("objects", objects, 3)]
    for field, value, low in checks:
        if value < low:
            raise ValueError(f"{field}={value}: must be >= {low} (frames: the first and last are "
                             "not scored; objects: occluded, occluder and one leaving the frame)")
    if objects > MAX_OBJECTS:
        raise ValueError(f"objects={objects}: at most {MAX_OBJECTS} fit in a small frame")


def _texture(shape: _Shape, t: int, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 stripes and checks that move with the object at frame t."""
    cx, cy = shape.path[t]
    u, v = xx - np.float32(cx), yy - np.float32(cy)  # object coordinates, (H, W)
    stripes = np.sin(shape.freq[0] * u + shape.freq[1] * v)  # (H, W)
    checks = np.sign(np.sin(0.9 * u) * np.sin(0.9 * v))  # (H, W)
    return shape.color + (40.0 * stripes + 15.0 * checks)[..., None]  # (H, W, 3)


def _outline(shape: _Shape, t: int, height: int, width: int) -> np.ndarray:
    """(H, W) bool mask of the shape at frame t, clipped to the frame."""
    canvas = np.zeros((height, width), dtype=np.uint8)
    cx, cy = (int(round(c)) for c in shape.path[t])
    if shape.kind == "ellipse":
        cv2.ellipse(canvas, (cx, cy), shape.half, shape.angle, 0, 360, 1, thickness=-1)
    else:
        size = (2.0 * shape.half[0], 2.0 * shape.half[1])
        box = cv2.boxPoints(((float(cx), float(cy)), size, shape.angle))  # (4, 2)
        cv2.fillPoly(canvas, [np.round(box).astype(np.int32)], 1)
    return canvas.astype(bool)


def _keyframe_path(keys_t: list[float], keys_xy: list[tuple[float, float]], frames: int) -> np.ndarray:
    """(T, 2) centres interpolated linearly between keyframes."""
    t = np.arange(frames)
    xs, ys = zip(*keys_xy, strict=True)
    return np.stack([np.interp(t, keys_t, xs), np.interp(t, keys_t, ys)], axis=1)


def _bouncing_path(rng: np.random.Generator, frames: int, height: int, width: int, margin: int) -> np.ndarray:
    """(T, 2) straight-line centres reflected at the borders (kept `margin` inside)."""
    start = rng.uniform((margin, margin), (width - margin, height - margin))
    step = rng.uniform(-0.04, 0.04, size=2) * (width, height)
    raw = start + np.arange(frames)[:, None] * step  # (T, 2)
    lo, span = margin, np.array([width - 2 * margin, height - 2 * margin], dtype=np.float64)
    folded = np.mod(raw - lo, 2 * span)
    return lo + np.where(folded > span, 2 * span - folded, folded)


def _random_look(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """A random base colour (3,), stripe frequency (2,) and angle in degrees."""
    color = rng.uniform(40, 215, size=3).astype(np.float32)
    freq = rng.uniform(-0.8, 0.8, size=2).astype(np.float32)
    return color, freq, float(rng.uniform(0, 180))


def _scripted_shapes(rng: np.random.Generator, frames: int, height: int, width: int) -> list[_Shape]:
    """Objects 1 (occluded), 2 (occluder) and 3 (leaves through the top and returns)."""
    H, W, last = height, width, frames - 1
    j = rng.uniform(-0.03, 0.03, size=6)  # small jitter of the scripted layout
    h1 = (int(0.17 * W), int(0.22 * H))
    h2 = (int(0.10 * W), int(0.16 * H))
    h3 = (max(3, int(0.06 * W)), max(3, int(0.09 * H)))
    p1 = _keyframe_path([0, last], [((0.22 + j[0]) * W, (0.58 + j[1]) * H),
                                    ((0.62 + j[0]) * W, (0.58 + j[1]) * H)], frames)
    p2 = _keyframe_path([0, last], [((0.86 + j[2]) * W, (0.42 + j[3]) * H),
                                    ((0.18 + j[2]) * W, (0.42 + j[3]) * H)], frames)
    out_y = -(math.hypot(*h3) + 2)  # centre this far above row 0: fully outside
    a, b = max(1, round(0.35 * last)), min(last - 1, round(0.65 * last))
    x3, y3 = (0.50 + j[4]) * W, (0.20 + j[5]) * H
    p3 = _keyframe_path([0, a, b, last], [(x3, y3), (x3, out_y), (x3, out_y), (x3 + 0.05 * W, y3)], frames)
    kinds = ("ellipse", "rect", "ellipse")
    shapes = []
    for kind, half, path in zip(kinds, (h1, h2, h3), (p1, p2, p3), strict=True):
        color, freq, angle = _random_look(rng)
        shapes.append(_Shape(kind, half, angle if kind == "rect" else angle / 6, color, freq, path))
    return shapes


def _wanderer(rng: np.random.Generator, frames: int, height: int, width: int) -> _Shape:
    """A small random shape on a bouncing path."""
    half = (int(rng.integers(3, max(4, width // 14))), int(rng.integers(3, max(4, height // 10))))
    color, freq, angle = _random_look(rng)
    path = _bouncing_path(rng, frames, height, width, margin=max(half))
    kind = "ellipse" if rng.random() < 0.5 else "rect"
    return _Shape(kind, half, angle, color, freq, path)


def _render_labels(shapes: list[_Shape], t: int, height: int, width: int) -> np.ndarray:
    """(H, W) uint8 label map of frame t, nearer objects covering farther ones."""
    labels = np.zeros((height, width), dtype=np.uint8)
    for k in [1, *range(4, len(shapes) + 1), 3, 2]:  # back to front: 2 in front of all
        labels[_outline(shapes[k - 1], t, height, width)] = k
    return labels


def _render_image(shapes: list[_Shape], labels: np.ndarray, t: int, background: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8 BGR frame: background, object textures under their labels, noise."""
    height, width = labels.shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)  # (H, W) each
    img = background.copy()  # (H, W, 3) float32
    for k, shape in enumerate(shapes, start=1):
        mask = labels == k
        if mask.any():
            img[mask] = _texture(shape, t, xx, yy)[mask]
    img += rng.normal(0.0, 3.0, size=img.shape).astype(np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float32 smooth random texture: blurred noise over a colour gradient."""
    coarse = rng.uniform(0, 255, size=(height // 4 + 1, width // 4 + 1, 3)).astype(np.float32)
    noise = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)  # (H, W, 3)
    ramp = np.linspace(60, 160, width, dtype=np.float32)[None, :, None]  # (1, W, 1)
    return (0.5 * noise + 0.5 * ramp).astype(np.float32)


def _make_shapes(rng: np.random.Generator, frames: int, height: int, width: int, objects: int) -> list[_Shape]:
    """Scripted objects 1-3 plus wanderers, redrawn until every id shows in frame 0."""
    for _ in range(_ATTEMPTS):
        shapes = _scripted_shapes(rng, frames, height, width)
        shapes += [_wanderer(rng, frames, height, width) for _ in range(objects - 3)]
        first = _render_labels(shapes, 0, height, width)
        if len(np.unique(first[first > 0])) == objects:
            return shapes
    raise ValueError(f"could not place {objects} visible objects in a {height}x{width} frame; "
                     "use fewer objects or a larger frame")


def _events(shapes: list[_Shape], labels: np.ndarray) -> tuple[tuple[int, ...], dict[int, tuple[int, ...]]]:
    """Frames where object 2 covers part of object 1, and each object's absent frames."""
    frames, height, width = labels.shape
    occluded = tuple(t for t in range(frames)
                     if (_outline(shapes[0], t, height, width) & (labels[t] == 2)).any())
    absent = {k: tuple(t for t in range(frames) if not (labels[t] == k).any())
              for k in range(1, len(shapes) + 1)}
    return occluded, {k: v for k, v in absent.items() if v}


def make_sequence(root: Path, name: str, rng: np.random.Generator, frames: int, height: int,
                  width: int, objects: int) -> SyntheticSequence:
    """Write one sequence's JPEG frames and palette annotations under ``root``."""
    img_dir, ann_dir = (root / kind / RESOLUTION / name for kind in ("JPEGImages", "Annotations"))
    for folder in (img_dir, ann_dir):
        folder.mkdir(parents=True, exist_ok=True)
    shapes = _make_shapes(rng, frames, height, width, objects)
    background = _background(rng, height, width)
    labels = np.stack([_render_labels(shapes, t, height, width) for t in range(frames)])
    for t in range(frames):  # labels: (T, H, W) uint8
        image = _render_image(shapes, labels[t], t, background, rng)
        cv2.imwrite(str(img_dir / f"{t:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        write_index_png(ann_dir / f"{t:05d}.png", labels[t])
    occluded, absent = _events(shapes, labels)
    return SyntheticSequence(name, frames, objects, occluded, absent)


def make_dataset(root: str | os.PathLike[str], sequences: int = 2, frames: int = 8,
                 height: int = 96, width: int = 160, objects: int = 3, seed: int = 0,
                 split: str = "val") -> list[SyntheticSequence]:
    """Write ``sequences`` synthetic sequences (``synthetic-000``, ...; >= 3 frames, >= 32x32, 3..8 objects)
    and the split list in the DAVIS layout under ``root``; the output depends only on ``seed``."""
    _check_args(sequences, frames, height, width, objects)
    root = Path(root)
    made = []
    for i in range(sequences):
        rng = np.random.default_rng([seed, i])
        made.append(make_sequence(root, f"synthetic-{i:03d}", rng, frames, height, width, objects))
    split_dir = root / "ImageSets" / "2017"
    split_dir.mkdir(parents=True, exist_ok=True)
    (split_dir / f"{split}.txt").write_text("".join(f"{s.name}\n" for s in made))
    log.info("wrote %d synthetic sequences to %s", len(made), root)
    return made
