"""DAVIS 2017 region (J) and boundary (F) measures and their per-object statistics.

Numerically the same as the official toolkit (davisvideochallenge/davis2017-evaluation,
``davis2017/metrics.py`` and ``davis2017/utils.py``), written anew with numpy and OpenCV
(no scikit-image). ``README.md`` beside this file compares each definition with the
toolkit function it reproduces.

Masks are (H, W) arrays; any non-zero value counts as foreground, as in the toolkit
(``astype(bool)``). Per-frame values are float64.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import InputError

#: The toolkit's default boundary tolerance: a fraction of the image diagonal.
BOUND_TH = 0.008
#: The toolkit's threshold of the recall statistic (a frame is recalled when value > 0.5).
RECALL_THRESHOLD = 0.5
#: The toolkit's number of decay bins.
DECAY_BINS = 4


def _check_pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks as bool arrays of one shape; raise InputError otherwise."""
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape:
        raise InputError(
            f"ground truth {gt.shape} and prediction {pred.shape} differ in shape; "
            "resize the prediction to the annotation's size (nearest neighbour) before scoring"
        )
    return gt.astype(bool), pred.astype(bool)


def region_similarity(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """J, the Jaccard index of binary masks; 1.0 where both are empty (``db_eval_iou``).

    Args:
        gt: (..., H, W) ground-truth mask, any dtype, non-zero is foreground.
        pred: (..., H, W) predicted mask of the same shape.

    Returns:
        (...) float64: |gt & pred| / |gt | pred| per mask, 1.0 where the union is empty.
    """
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
    """One-pixel boundary map of a binary mask, the toolkit's ``_seg2bmap`` rule.

    Pixel (y, x) is a boundary pixel when it differs from its east (y, x+1), south
    (y+1, x) or south-east (y+1, x+1) neighbour. In the last row only the east
    neighbour is compared, in the last column only the south one, and the bottom-right
    pixel is never a boundary pixel. Hence a mask that is all 0 or all 1 (a full-frame
    mask) has no boundary at all.

    ``width`` and ``height`` default to the mask's W and H, the only values the toolkit's
    evaluation ever uses. Other values reproduce the toolkit's resizing branch, which
    shifts rather than resizes: boundary pixel (y, x) goes to
    (y + height // H, x + width // H) of a (height, width) map (note the toolkit divides
    ``width`` by H). A shifted pixel outside the map raises InputError, where the
    toolkit raises IndexError.

    Args:
        mask: (H, W) mask, any dtype, non-zero is foreground.
        width: width of the returned map, default W.
        height: height of the returned map, default H.

    Returns:
        (height, width) bool boundary map.
    """
    seg = np.asarray(mask).astype(bool)
    if seg.ndim != 2:
        raise InputError(f"seg2bmap needs one (H, W) mask, got shape {seg.shape}")
    h, w = seg.shape
    b = np.zeros_like(seg)
    # Interior: differs from the east, south or south-east neighbour.
    core = seg[:-1, :-1]
    b[:-1, :-1] = (core ^ seg[:-1, 1:]) | (core ^ seg[1:, :-1]) | (core ^ seg[1:, 1:])
    b[-1, :-1] = seg[-1, :-1] ^ seg[-1, 1:]  # last row: east neighbour only
    b[:-1, -1] = seg[:-1, -1] ^ seg[1:, -1]  # last column: south neighbour only
    width = w if width is None else width
    height = h if height is None else height
    if (width, height) == (w, h):
        return b
    return _shift_bmap(b, width, height)


def _shift_bmap(b: np.ndarray, width: int, height: int) -> np.ndarray:
    """The toolkit's ``_seg2bmap`` branch for width != W or height != H: a shift."""
    h = b.shape[0]
    ys, xs = np.nonzero(b)
    # The toolkit's 1 + floor((y - 1) + height / h) is y + floor(height / h).
    rows, cols = ys + math.floor(height / h), xs + math.floor(width / h)
    if rows.size and (rows.max() >= height or cols.max() >= width):
        raise InputError(
            f"seg2bmap: a {b.shape[1]}x{h} mask cannot be mapped to a {width}x{height} map "
            "(the toolkit raises IndexError here); call it without width and height"
        )
    out = np.zeros((height, width), dtype=bool)
    out[rows, cols] = True
    return out


def disk(radius: float) -> np.ndarray:
    """The disk footprint {(x, y) : x^2 + y^2 <= radius^2}, as scikit-image's ``disk``.

    Coordinates run over ``np.arange(-radius, radius + 1)`` on both axes, so an integer
    radius r gives a (2r+1, 2r+1) footprint. OpenCV's ``MORPH_ELLIPSE`` differs from it
    for every r >= 2 (it is wider on the horizontal rows next to the centre).

    Returns:
        (S, S) uint8 footprint of 0 and 1, S = len(np.arange(-radius, radius + 1)).
    """
    if radius < 0:
        raise InputError(f"disk radius must be >= 0, got {radius}")
    coords = np.arange(-radius, radius + 1)  # (S,)
    inside = coords[None, :] ** 2 + coords[:, None] ** 2 <= radius**2  # (S, S)
    return inside.astype(np.uint8)


def boundary_radius(height: int, width: int, bound_th: float = BOUND_TH) -> float:
    """Dilation radius of the boundary match, in pixels (the toolkit's ``bound_pix``).

    ``bound_th`` >= 1 is a radius in pixels, used as is; below 1 it is a fraction of the
    image diagonal, rounded up: ceil(bound_th * sqrt(H^2 + W^2)). 480x854 gives 8,
    96x160 gives 2.
    """
    if bound_th >= 1:
        return float(bound_th)
    return float(np.ceil(bound_th * np.linalg.norm((height, width))))


def boundary_f_measure(gt: np.ndarray, pred: np.ndarray, bound_th: float = BOUND_TH) -> float:
    """F, the boundary F-measure of one frame (the toolkit's ``f_measure``).

    Boundaries come from :func:`seg2bmap`; a predicted boundary pixel is matched when a
    ground-truth boundary pixel lies within the :func:`disk` of radius
    :func:`boundary_radius`, and conversely. precision = matched predicted / predicted
    boundary pixels, recall = matched ground-truth / ground-truth boundary pixels,
    F = 2PR / (P + R). Empty boundaries: both empty gives 1; only one empty gives 0.
    Empty boundary means an all-0 or all-1 mask, so an empty and a full-frame mask
    score F = 1.

    Args:
        gt: (H, W) ground-truth mask, non-zero is foreground.
        pred: (H, W) predicted mask.
        bound_th: tolerance, see :func:`boundary_radius`.

    Returns:
        F in [0, 1].
    """
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
    """The toolkit's four overlapping decay bins of n per-frame values, as (start, stop).

    Edges e = round(linspace(1, n, 5) + 1e-10) - 1 (the 1e-10 rounds halves up); bin i
    is values[e[i] : e[i+1] + 1], so neighbouring bins share their edge value. n = 8
    gives e = [0, 2, 4, 5, 7] and bins [0:3], [2:5], [4:6], [5:8].

    The toolkit keeps the edges as uint8, so both e and e + 1 wrap modulo 256; we wrap
    them too. Only n >= 256 is affected, where the toolkit's bins are meaningless (n = 256
    makes the last bin [255:0], empty, and the decay NaN).
    """
    if n < 1:
        raise InputError(f"decay bins need at least one per-frame value, got n={n}")
    rounded = np.round(np.linspace(1, n, DECAY_BINS + 1) + 1e-10).astype(np.int64)  # (5,)
    e = [(int(r) - 1) % 256 for r in rounded]
    return [(e[i], (e[i + 1] + 1) % 256) for i in range(DECAY_BINS)]


def statistics(values: np.ndarray) -> Statistics:
    """Mean, recall and decay of one object's per-frame J or F (``db_statistics``).

    mean = nanmean(values); recall = mean(values > 0.5), where a NaN frame counts as not
    recalled; decay = nanmean(first decay bin) - nanmean(last decay bin), see
    :func:`decay_bins`. All-NaN inputs give NaN, as in the toolkit.

    Args:
        values: (T,) per-frame values, float.
    """
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
        return (self.jf_mean, self.j_mean, self.j_recall, self.j_decay,
                self.f_mean, self.f_recall, self.f_decay)


GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")


def global_scores(j: Sequence[Statistics], f: Sequence[Statistics]) -> GlobalScores:
    """Average per-object statistics over all objects (``evaluation_method.py``).

    Every entry is a plain mean (NaN propagates); J&F-Mean = (J-Mean + F-Mean) / 2.
    No objects at all gives NaN everywhere, as np.mean([]) does in the toolkit.

    Args:
        j: per-object J statistics, one per object of every sequence.
        f: per-object F statistics in the same order.
    """
    if len(j) != len(f):
        raise InputError(f"need one F statistic per J statistic, got {len(j)} J and {len(f)} F")

    def avg(xs: list[float]) -> float:
        if not xs:
            return math.nan
        return float(np.mean(np.asarray(xs, dtype=np.float64)))

    jm, fm = avg([s.mean for s in j]), avg([s.mean for s in f])
    return GlobalScores(
        jf_mean=(jm + fm) / 2.0,
        j_mean=jm, j_recall=avg([s.recall for s in j]), j_decay=avg([s.decay for s in j]),
        f_mean=fm, f_recall=avg([s.recall for s in f]), f_decay=avg([s.decay for s in f]),
    )
