import numpy as np
import pytest

from simvos_trt import processing
from simvos_trt.errors import InputError


def test_padding_matches_the_official_split():
    # 117 -> 128: 11 rows, 5 on top and 6 below; 203 -> 208: 5 columns, 2 left, 3 right.
    assert processing.padding_for(117, 203) == processing.Padding(left=2, right=3, top=5, bottom=6)
    assert processing.padding_for(480, 854) == processing.Padding(left=5, right=5, top=0, bottom=0)
    assert processing.padding_for(128, 192) == processing.Padding(0, 0, 0, 0)


def test_pad_unpad_round_trip():
    x = np.arange(2 * 117 * 203, dtype=np.float32).reshape(2, 117, 203)
    pad = processing.padding_for(117, 203)
    y = processing.pad(x, pad)
    assert y.shape == (2, 128, 208)
    assert y[:, :5].sum() == 0 and y[:, :, :2].sum() == 0 and y[:, -6:].sum() == 0
    np.testing.assert_array_equal(processing.unpad(y, pad), x)


def test_normalize_known_values():
    frame = np.zeros((1, 2, 3), dtype=np.uint8)
    frame[0, 1] = 255
    x = processing.normalize(frame)
    assert x.shape == (3, 1, 2) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0, 0], [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225], rtol=1e-6)
    np.testing.assert_allclose(x[:, 0, 1], [0.515 / 0.229, 0.544 / 0.224, 0.594 / 0.225], rtol=1e-6)


def test_object_ids_sorted_and_one_hot():
    mask = np.array([[0, 7, 3], [1, 3, 0]], dtype=np.uint8)
    ids = processing.object_ids(mask)
    np.testing.assert_array_equal(ids, [1, 3, 7])
    oh = processing.one_hot(mask, ids)
    np.testing.assert_array_equal(oh[1], [[0, 0, 1], [0, 1, 0]])
    assert oh.sum() == 4


@pytest.mark.parametrize(
    "frames, mask, message",
    [
        (np.zeros((2, 8, 8), np.uint8), np.ones((8, 8), np.uint8), "frames: expected a"),
        (np.zeros((2, 8, 8, 3), np.float32), np.ones((8, 8), np.uint8), "uint8"),
        (np.zeros((2, 8, 8, 3), np.uint8), np.ones((8, 9), np.uint8), "differs"),
        (np.zeros((2, 8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8), "no object"),
        (np.zeros((2, 8, 8, 3), np.uint8), np.ones((8, 8), np.int64), r"masks\[0\]"),
    ],
)
def test_check_annotations_errors(frames, mask, message):
    with pytest.raises(InputError, match=message):
        processing.check_annotations(frames, mask)
