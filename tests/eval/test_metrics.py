"""J, F and the per-object statistics against answers worked out by hand."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from simvos_trt.errors import InputError
from simvos_trt.eval import metrics


def square(h: int, w: int, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """(h, w) bool mask, True on rows[0]..rows[1] x cols[0]..cols[1] (inclusive)."""
    m = np.zeros((h, w), dtype=bool)
    m[rows[0] : rows[1] + 1, cols[0] : cols[1] + 1] = True
    return m


def points(mask: np.ndarray) -> set[tuple[int, int]]:
    return {(int(y), int(x)) for y, x in zip(*np.nonzero(mask), strict=True)}


def perimeter(rows: tuple[int, int], cols: tuple[int, int]) -> set[tuple[int, int]]:
    (r0, r1), (c0, c1) = rows, cols
    return {(y, x) for y in range(r0, r1 + 1) for x in range(c0, c1 + 1)
            if y in (r0, r1) or x in (c0, c1)}


# ---------------------------------------------------------------- J


def test_j_of_a_square_shifted_by_two_pixels():
    gt = square(10, 10, (2, 5), (2, 5))  # 4x4 = 16 pixels
    pred = square(10, 10, (2, 5), (4, 7))  # shifted 2 to the right
    # intersection: rows 2..5 x cols 4..5 = 8; union = 16 + 16 - 8 = 24; J = 8/24 = 1/3
    assert float(metrics.region_similarity(gt, pred)) == pytest.approx(1 / 3)
    diag = square(10, 10, (3, 6), (3, 6))  # shifted by (1, 1)
    # intersection 3x3 = 9; union 32 - 9 = 23
    assert float(metrics.region_similarity(gt, diag)) == pytest.approx(9 / 23)


def test_j_empty_conventions():
    gt = square(6, 7, (1, 2), (1, 3))
    empty = np.zeros((6, 7), dtype=bool)
    assert float(metrics.region_similarity(gt, empty)) == 0.0  # 0 / 6
    assert float(metrics.region_similarity(empty, gt)) == 0.0  # 0 / 6
    assert float(metrics.region_similarity(empty, empty)) == 1.0  # union 0 -> 1


def test_j_full_frame_and_non_boolean_masks():
    full = np.full((5, 4), 3, dtype=np.uint8)  # any non-zero value is foreground
    half = square(5, 4, (0, 4), (0, 1)).astype(np.uint8)  # 10 of 20 pixels
    assert float(metrics.region_similarity(full, full)) == 1.0
    assert float(metrics.region_similarity(full, half)) == 0.5  # 10 / 20
    assert float(metrics.region_similarity(full, np.zeros((5, 4)))) == 0.0  # 0 / 20


def test_j_is_batched_over_frames_and_checks_shapes():
    gt = np.stack([square(7, 5, (0, 6), (0, 4)), np.zeros((7, 5), bool)])  # odd 7x5 frame
    pred = np.stack([square(7, 5, (0, 6), (0, 0)), np.zeros((7, 5), bool)])
    # frame 0: one column of 7 inside the full 35 -> 7/35 = 0.2; frame 1: both empty -> 1
    np.testing.assert_allclose(metrics.region_similarity(gt, pred), [0.2, 1.0])
    with pytest.raises(InputError, match="differ in shape"):
        metrics.region_similarity(gt, pred[:, :6])


# ---------------------------------------------------------------- boundary maps


def test_boundary_of_an_inner_square_is_the_perimeter_shifted_to_the_origin():
    # Rule: a pixel differing from its E, S or SE neighbour. Fg pixels of the right column
    # and bottom row differ from E/S; bg pixels of row 1 and column 1 differ from S/E/SE.
    b = metrics.seg2bmap(square(10, 10, (2, 5), (2, 5)))
    assert b.dtype == bool and points(b) == perimeter((1, 5), (1, 5))  # 16 pixels


def test_boundary_of_masks_touching_the_border():
    # Left two columns of a 5x6 frame: column 1 differs from its east neighbour, rows
    # 0..3 by the interior rule, row 4 by the last-row (east only) rule: 5 pixels. The
    # image border itself is never a boundary.
    left = square(5, 6, (0, 4), (0, 1))
    assert points(metrics.seg2bmap(left)) == {(y, 1) for y in range(5)}
    # Right two columns: background column 3 differs from its east neighbour (rows 0..3
    # interior rule, row 4 last-row rule); the last column compares only south: equal.
    right = square(5, 6, (0, 4), (4, 5))
    assert points(metrics.seg2bmap(right)) == {(y, 3) for y in range(5)}
    # Bottom two rows: background row 2 differs from its south neighbour, x = 0..4 by the
    # interior rule and x = 5 by the last-column (south only) rule: all 6 pixels.
    bottom = square(5, 6, (3, 4), (0, 5))
    assert points(metrics.seg2bmap(bottom)) == {(2, x) for x in range(6)}


def test_boundary_last_row_column_and_corner_rules():
    # A single pixel in the bottom-right corner: (3, 3) sees it south-east, (3, 4) south
    # (last-column rule), (4, 3) east (last-row rule); the corner itself is never marked.
    corner = square(5, 5, (4, 4), (4, 4))
    assert points(metrics.seg2bmap(corner)) == {(3, 3), (3, 4), (4, 3)}
    # All-0 and all-1 masks have no boundary.
    assert not metrics.seg2bmap(np.zeros((4, 3))).any()
    assert not metrics.seg2bmap(np.ones((4, 3))).any()
    # One row: only east neighbours compare; 1x1: nothing.
    assert points(metrics.seg2bmap(np.array([[0, 1, 1, 0]]))) == {(0, 0), (0, 2)}
    assert not metrics.seg2bmap(np.ones((1, 1))).any()


def test_boundary_width_height_default_and_the_toolkits_shift():
    mask = square(4, 4, (1, 1), (1, 1))  # boundary (0,0), (0,1), (1,0), (1,1)
    np.testing.assert_array_equal(metrics.seg2bmap(mask, width=4, height=4), metrics.seg2bmap(mask))
    # Toolkit branch for other sizes: (y, x) -> (y + 8 // 4, x + 8 // 4) in an 8x8 map.
    shifted = metrics.seg2bmap(mask, width=8, height=8)
    assert shifted.shape == (8, 8) and points(shifted) == {(2, 2), (2, 3), (3, 2), (3, 3)}
    with pytest.raises(InputError, match="IndexError"):
        metrics.seg2bmap(square(4, 4, (2, 2), (2, 2)), width=2, height=2)  # (2, 2) -> (2, 2) of 2x2


# ---------------------------------------------------------------- disk and tolerance


def test_disk_footprint_and_opencvs_ellipse_differ():
    expected = np.array([[0, 0, 1, 0, 0],
                         [0, 1, 1, 1, 0],
                         [1, 1, 1, 1, 1],
                         [0, 1, 1, 1, 0],
                         [0, 0, 1, 0, 0]], dtype=np.uint8)  # x^2 + y^2 <= 4
    np.testing.assert_array_equal(metrics.disk(2), expected)
    np.testing.assert_array_equal(metrics.disk(0), [[1]])
    np.testing.assert_array_equal(metrics.disk(1), [[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    assert not np.array_equal(cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)), expected)
    # A non-integer radius in pixels: arange(-1.5, 2.5) = [-1.5, -0.5, 0.5, 1.5]; only
    # the four (+-0.5, +-0.5) points have x^2 + y^2 = 0.5 <= 2.25.
    np.testing.assert_array_equal(metrics.disk(1.5), np.pad(np.ones((2, 2), np.uint8), 1))


def test_boundary_radius():
    assert metrics.boundary_radius(480, 854) == 8.0  # 0.008 * 979.65 = 7.84 -> 8
    assert metrics.boundary_radius(96, 160) == 2.0  # 0.008 * 186.59 = 1.49 -> 2
    assert metrics.boundary_radius(7, 5) == 1.0  # 0.008 * 8.60 = 0.07 -> 1
    assert metrics.boundary_radius(480, 854, bound_th=3) == 3.0  # >= 1: pixels, as given


# ---------------------------------------------------------------- F


def test_f_of_a_square_shifted_by_two_pixels():
    # 10x10 frame: radius ceil(0.008 * 14.14) = 1, a cross. gt boundary: perimeter of
    # rows 1..5 x cols 1..5; prediction (2 to the right): perimeter of rows 1..5 x 3..7.
    # Predicted boundary pixels within 1 step (4-neighbourhood) of the gt boundary:
    # top row cols 3, 4, 5 (on it) and 6 (next to (1, 5)), not 7: 4 of 5; bottom row the
    # same: 4 of 5; left column 3: (2, 3) and (4, 3) touch the gt's top and bottom rows,
    # (3, 3) is 2 away from cols 1 and 5: 2 of 3; right column 7: 0 of 3. P = 10/16.
    # The mirror image gives R = 10/16, so F = 2 * P * R / (P + R) = 10/16 = 0.625.
    gt = square(10, 10, (2, 5), (2, 5))
    pred = square(10, 10, (2, 5), (4, 7))
    assert metrics.boundary_f_measure(gt, pred) == pytest.approx(0.625)
    # Shifted by one pixel: every boundary pixel has a match within the cross: F = 1.
    assert metrics.boundary_f_measure(gt, square(10, 10, (2, 5), (3, 6))) == 1.0


def test_f_of_single_pixels():
    # 9x9 frame, radius 1 (cross). A pixel at (y, x) has the boundary {y-1, y} x {x-1, x}.
    gt = square(9, 9, (4, 4), (4, 4))  # boundary {3,4} x {3,4}
    right = square(9, 9, (4, 4), (6, 6))  # boundary {3,4} x {5,6}
    # (3,5), (4,5) touch (3,4), (4,4); (3,6), (4,6) are 2 away: P = R = 2/4, F = 0.5
    assert metrics.boundary_f_measure(gt, right) == pytest.approx(0.5)
    diag = square(9, 9, (5, 5), (5, 5))  # boundary {4,5} x {4,5}
    # (4,4) shared, (4,5) and (5,4) one step from it, (5,5) only diagonal: P = R = 3/4
    assert metrics.boundary_f_measure(gt, diag) == pytest.approx(0.75)


def test_f_uses_the_disk_not_opencvs_ellipse():
    # Radius 2 given in pixels. gt pixel (5,5): boundary {4,5} x {4,5}; prediction pixel
    # (6,8): boundary {5,6} x {7,8}. Squared distances to the nearest other-boundary pixel:
    # pred (5,7): 4 (to (5,5)), (6,7): 5, (5,8): 9, (6,8): 10 -> P = 1/4 (disk: <= 4);
    # gt (5,5): 4, (4,5): 5, (4,4) and (5,4): 9 or more -> R = 1/4. F = 2/16 / (1/2) = 0.25.
    # MORPH_ELLIPSE(5x5) also reaches (dy, dx) = (1, 2), squared distance 5: it would give
    # P = R = 2/4 and F = 0.5.
    gt = square(12, 12, (5, 5), (5, 5))
    pred = square(12, 12, (6, 6), (8, 8))
    assert metrics.boundary_f_measure(gt, pred, bound_th=2) == pytest.approx(0.25)


def test_f_empty_and_full_frame_conventions():
    obj = square(8, 8, (2, 4), (2, 4))
    empty = np.zeros((8, 8), dtype=bool)
    full = np.ones((8, 8), dtype=bool)
    assert metrics.boundary_f_measure(empty, empty) == 1.0  # no boundaries: P = R = 1
    assert metrics.boundary_f_measure(obj, empty) == 0.0  # P = 1, R = 0
    assert metrics.boundary_f_measure(empty, obj) == 0.0  # P = 0, R = 1
    # A full-frame mask has no boundary either: against empty it scores F = 1 (J = 0),
    # against an object F = 0.
    assert metrics.boundary_f_measure(full, full) == 1.0
    assert metrics.boundary_f_measure(full, empty) == 1.0
    assert metrics.boundary_f_measure(full, obj) == 0.0
    with pytest.raises(InputError, match="one \\(H, W\\) frame"):
        metrics.boundary_f_measure(full[None], full[None])


def test_f_on_border_touching_masks_of_an_odd_frame():
    # 7x5 frame, radius 1. gt: left 2 columns -> boundary column 1 (7 pixels).
    # pred: left 3 columns -> boundary column 2 (7 pixels), each one step from column 1.
    gt = square(7, 5, (0, 6), (0, 1))
    pred = square(7, 5, (0, 6), (0, 2))
    assert metrics.boundary_f_measure(gt, pred) == 1.0
    # pred: left 4 columns -> boundary column 3, two steps away: P = R = 0 -> F = 0.
    assert metrics.boundary_f_measure(gt, square(7, 5, (0, 6), (0, 3))) == 0.0


# ---------------------------------------------------------------- statistics


@pytest.mark.parametrize("n, bins", [
    (1, [(0, 1)] * 4),  # linspace(1, 1, 5) = 1 -> edges [0, 0, 0, 0, 0]
    (2, [(0, 1), (0, 2), (1, 2), (1, 2)]),  # [1, 1.25, 1.5, 1.75, 2] -> [1, 1, 2, 2, 2] - 1
    (3, [(0, 2), (1, 2), (1, 3), (2, 3)]),  # [1, 1.5, 2, 2.5, 3] -> [1, 2, 2, 3, 3] - 1
    (4, [(0, 2), (1, 3), (2, 3), (2, 4)]),  # [1, 1.75, 2.5, 3.25, 4] -> [1, 2, 3, 3, 4] - 1
    (6, [(0, 2), (1, 4), (3, 5), (4, 6)]),  # [1, 2.25, 3.5, 4.75, 6] -> [1, 2, 4, 5, 6] - 1
    (8, [(0, 3), (2, 5), (4, 6), (5, 8)]),  # [1, 2.75, 4.5, 6.25, 8] -> [1, 3, 5, 6, 8] - 1
    # [1, 64.75, 128.5, 192.25, 256] -> edges [0, 64, 128, 191, 255]; 255 + 1 wraps to 0
    (256, [(0, 65), (64, 129), (128, 192), (191, 0)]),
])
def test_decay_bins(n, bins):
    assert metrics.decay_bins(n) == bins


def test_statistics_of_a_decreasing_sequence():
    values = np.array([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    s = metrics.statistics(values)
    assert s.mean == pytest.approx(5.2 / 8)  # 0.65
    assert s.recall == 5 / 8  # 1.0 .. 0.6 are > 0.5; 0.5 itself is not
    # bins [0:3] -> mean(1, .9, .8) = 0.9 and [5:8] -> mean(.5, .4, .3) = 0.4
    assert s.decay == pytest.approx(0.5)


def test_statistics_nan_handling():
    s = metrics.statistics(np.array([np.nan, 1.0, 0.0, 1.0]))
    assert s.mean == pytest.approx(2 / 3)  # NaN left out of the mean
    assert s.recall == 0.5  # NaN is not > 0.5 but stays in the denominator: 2/4
    # n = 4: bins [0:2] = (nan, 1) -> 1 and [2:4] = (0, 1) -> 0.5: decay 0.5
    assert s.decay == pytest.approx(0.5)
    s = metrics.statistics(np.full(3, np.nan))
    assert math.isnan(s.mean) and s.recall == 0.0 and math.isnan(s.decay)
    with pytest.raises(InputError):
        metrics.statistics(np.array([]))


def test_global_scores_average_over_objects():
    j = [metrics.Statistics(1.0, 1.0, 0.0), metrics.Statistics(0.5, 0.0, 0.25)]
    f = [metrics.Statistics(0.8, 1.0, 0.1), metrics.Statistics(0.2, 0.5, 0.3)]
    g = metrics.global_scores(j, f)
    # J-Mean 0.75, F-Mean 0.5, J&F (0.75 + 0.5) / 2 = 0.625
    assert g.row() == pytest.approx((0.625, 0.75, 0.5, 0.125, 0.5, 0.75, 0.2))
    assert all(math.isnan(x) for x in metrics.global_scores([], []).row())
    with pytest.raises(InputError):
        metrics.global_scores(j, f[:1])
