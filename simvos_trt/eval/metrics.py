"""DAVIS 2017 region (J) and boundary (F) measures and their per-object statistics, numerically the official
toolkit's (``README.md`` here compares the definitions); masks are (H, W), non-zero is foreground."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import InputError

BOUND_TH = 0.008  # the toolkit's default boundary tolerance: a fraction of the image diagonal
RECALL_THRESHOLD = 0.5  # the toolkit's threshold of the recall statistic (a frame is recalled when value > 0.5)
DECAY_BINS = 4  # the toolkit's number of decay bins


def _check_pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks as bool arrays of one shape; raise InputError otherwise."""
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape:
        raise InputError(f"ground truth {gt.shape} and prediction {pred.shape} differ in shape; resize the "
                         "prediction to the annotation's size (nearest neighbour) before scoring")
    return gt.astype(bool), pred.astype(bool)


def region_similarity(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(...) J, the Jaccard index of (..., H, W) masks; 1.0 where both are empty (``db_eval_iou``)."""
    gt, pred = _check_pair(gt, pred)
    if gt.ndim < 2:
        raise InputError(f"masks must have at least 2 dimensions (..., H, W), got {gt.shape}")
    inter = np.count_nonzero(gt & pred, axis=(-2, -1))  # (...)
    union = np.count_nonzero(gt | pred, axis=(-2, -1))  # (...)
    with np.errstate(invalid="ignore", divide="ignore"):
        j = np.asarray(inter / union, dtype=np.float64)
    j[union == 0] = 1.0
    return j


def seg2bmap(mask: np.ndarray, width: int | None = None, height: int | None = None) -> np.ndarray:
    """(height, width) bool one-pixel boundary map of an (H, W) mask, the toolkit's ``_seg2bmap``: a pixel
    differing from its east, south or south-east neighbour. Other sizes than (H, W) shift, as the toolkit."""
    seg = np.asarray(mask).astype(bool)
    if seg.ndim != 2:
        raise InputError(f"seg2bmap needs one (H, W) mask, got shape {seg.shape}")
    h, w = seg.shape
    b = np.zeros_like(seg)
    core = seg[:-1, :-1]
    b[:-1, :-1] = (core ^ seg[:-1, 1:]) | (core ^ seg[1:, :-1]) | (core ^ seg[1:, 1:])
    b[-1, :-1] = seg[-1, :-1] ^ seg[-1, 1:]  # last row: east neighbour only
    b[:-1, -1] = seg[:-1, -1] ^ seg[1:, -1]  # last column: south neighbour only
    width, height = w if width is None else width, h if height is None else height
    return b if (width, height) == (w, h) else _shift_bmap(b, width, height)


def _shift_bmap(b: np.ndarray, width: int, height: int) -> np.ndarray:
    """The toolkit's ``_seg2bmap`` branch for width != W or height != H: a shift."""
    h = b.shape[0]
    ys, xs = np.nonzero(b)
    # The toolkit's 1 + floor((y - 1) + height / h) is y + floor(height / h).
    rows, cols = ys + math.floor(height / h), xs + math.floor(width / h)
    if rows.size and (rows.max() >= height or cols.max() >= width):
        raise InputError(f"seg2bmap: a {b.shape[1]}x{h} mask cannot be mapped to a {width}x{height} map "
                         "(the toolkit raises IndexError here); call it without width and height")
    out = np.zeros((height, width), dtype=bool)
    out[rows, cols] = True
    return out


def disk(radius: float) -> np.ndarray:
    """(S, S) uint8 footprint {x^2 + y^2 <= radius^2} over ``np.arange(-radius, radius + 1)``, as
    scikit-image's ``disk`` (not OpenCV's ``MORPH_ELLIPSE``)."""
    if radius < 0:
        raise InputError(f"disk radius must be >= 0, got {radius}")
    coords = np.arange(-radius, radius + 1)  # (S,)
    inside = coords[None, :] ** 2 + coords[:, None] ** 2 <= radius**2  # (S, S)
    return inside.astype(np.uint8)


def boundary_radius(height: int, width: int, bound_th: float = BOUND_TH) -> float:
    """Dilation radius of the boundary match (``bound_pix``): ``bound_th`` pixels when >= 1, else
    ceil(bound_th * diagonal): 8 at 480x854."""
    return float(bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm((height, width))))


def boundary_f_measure(gt: np.ndarray, pred: np.ndarray, bound_th: float = BOUND_TH) -> float:
    """F, the boundary F-measure of one (H, W) frame (the toolkit's ``f_measure``): 2PR / (P + R) of
    boundary pixels matched within :func:`boundary_radius`; both boundaries empty give 1, one gives 0."""
    gt, pred = _check_pair(gt, pred)
    if gt.ndim != 2:
        raise InputError(f"boundary_f_measure scores one (H, W) frame, got shape {gt.shape}")
    footprint = disk(boundary_radius(gt.shape[0], gt.shape[1], bound_th))
    gt_b, pred_b = seg2bmap(gt), seg2bmap(pred)
    n_gt, n_pred = int(np.count_nonzero(gt_b)), int(np.count_nonzero(pred_b))
    if n_gt == 0 or n_pred == 0:
        return 1.0 if n_gt == n_pred else 0.0
    gt_dil = cv2.dilate(gt_b.view(np.uint8), footprint).view(bool)  # (H, W)
    pred_dil = cv2.dilate(pred_b.view(np.uint8), footprint).view(bool)  # (H, W)
    precision = np.count_nonzero(pred_b & gt_dil) / float(n_pred)
    recall = np.count_nonzero(gt_b & pred_dil) / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


@dataclass(frozen=True)
class Statistics:
    """Per-object summary of per-frame values (the toolkit's ``db_statistics``)."""

    mean: float
    recall: float
    decay: float


def decay_bins(n: int) -> list[tuple[int, int]]:
    """The toolkit's four overlapping decay bins of n per-frame values, as (start, stop): n = 8 gives
    [0:3], [2:5], [4:6], [5:8]; edges wrap modulo 256 as the toolkit's uint8 ones."""
    if n < 1:
        raise InputError(f"decay bins need at least one per-frame value, got n={n}")
    rounded = np.round(np.linspace(1, n, DECAY_BINS + 1) + 1e-10).astype(np.int64)  # (5,)
    e = [(int(r) - 1) % 256 for r in rounded]
    return [(e[i], (e[i + 1] + 1) % 256) for i in range(DECAY_BINS)]


def statistics(values: np.ndarray) -> Statistics:
    """Mean, recall and decay of one object's (T,) per-frame J or F (``db_statistics``)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise InputError(f"statistics takes a (T,) vector of per-frame values, got {values.shape}")
    bins = decay_bins(values.size)
    first, last = bins[0], bins[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # all-NaN slices give NaN
        mean = np.nanmean(values)
        decay = np.nanmean(values[first[0] : first[1]]) - np.nanmean(values[last[0] : last[1]])
    recall = np.mean(values > RECALL_THRESHOLD)
    return Statistics(float(mean), float(recall), float(decay))


@dataclass(frozen=True)
class GlobalScores:
    """The toolkit's global table: means over all objects of all sequences."""

    jf_mean: float
    j_mean: float
    j_recall: float
    j_decay: float
    f_mean: float
    f_recall: float
    f_decay: float

    def row(self) -> tuple[float, ...]:
        """Values in the toolkit's column order (:data:`GLOBAL_COLUMNS`)."""
        return dataclasses.astuple(self)


GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")


def global_scores(j: Sequence[Statistics], f: Sequence[Statistics]) -> GlobalScores:
    """Plain means (NaN propagates) of the per-object J and F statistics (``evaluation_method.py``);
    J&F-Mean = (J-Mean + F-Mean) / 2; no object gives NaN."""
    if len(j) != len(f):
        raise InputError(f"need one F statistic per J statistic, got {len(j)} J and {len(f)} F")

    def avg(xs: list[float]) -> float:
        return float(np.mean(np.asarray(xs, dtype=np.float64))) if xs else math.nan

    jm, fm = avg([s.mean for s in j]), avg([s.mean for s in f])
    return GlobalScores(jf_mean=(jm + fm) / 2.0,
                        j_mean=jm, j_recall=avg([s.recall for s in j]), j_decay=avg([s.decay for s in j]),
                        f_mean=fm, f_recall=avg([s.recall for s in f]), f_decay=avg([s.decay for s in f]))
