"""Frame placement in the engine input and the way back (pure functions)."""

from __future__ import annotations

import numpy as np
import pytest

from simvos_trt import processing
from simvos_trt.runtime.backends.resample import resample_on_host
from simvos_trt.runtime.geometry import frame_size, place, place_mask, write_frame
from simvos_trt.runtime.postprocess import resample_plan


@pytest.mark.parametrize("size, engine", [((117, 203), (128, 208)), ((480, 854), (480, 864)), ((128, 192), (128, 192))])
def test_official_padding_when_the_padded_size_is_the_engine_size(size, engine):
    pl = place(*size, *engine)
    assert not pl.resized and pl.padding == processing.padding_for(*size)
    assert pl.padding.padded_size(*pl.scaled) == engine


@pytest.mark.parametrize("size, engine, scaled, padding", [
    ((480, 854), (240, 432), (240, 427), processing.Padding(2, 3, 0, 0)),
    ((64, 96), (32, 48), (32, 48), processing.Padding(0, 0, 0, 0)),
    ((40, 40), (32, 48), (32, 32), processing.Padding(8, 8, 0, 0)),
    ((20, 30), (32, 48), (32, 48), processing.Padding(0, 0, 0, 0)),
    ((1, 500), (32, 48), (1, 48), processing.Padding(0, 0, 15, 16)),
])
def test_other_sizes_are_resized_to_fit_and_padded_evenly(size, engine, scaled, padding):
    pl = place(*size, *engine)
    assert pl.resized and pl.scaled == scaled and pl.padding == padding and pl.padding.padded_size(*pl.scaled) == engine
    np.testing.assert_array_equal(pl.padding_array(), [padding.left, padding.right, padding.top, padding.bottom])


def test_write_frame_converts_channels_into_the_region():
    pl = place(5, 7, 16, 16)  # official padding 5/6 rows, 4/5 cols
    g = np.random.default_rng(0)
    rgb = g.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    for frame, bgr in [(rgb, False), (rgb[:, :, ::-1].copy(), True),
                       (np.concatenate([rgb, np.zeros((5, 7, 1), np.uint8)], 2), False),
                       (np.concatenate([rgb[:, :, ::-1], np.zeros((5, 7, 1), np.uint8)], 2), True)]:
        dst = np.full((16, 16, 3), 9, np.uint8)
        write_frame(dst, frame, pl, bgr)
        np.testing.assert_array_equal(dst[5:10, 4:11], rgb)
        assert (dst[:5] == 9).all() and (dst[10:] == 9).all()
    dst = np.zeros((16, 16, 3), np.uint8)
    write_frame(dst, rgb[:, :, 0], pl, False)
    np.testing.assert_array_equal(dst[5:10, 4:11], np.repeat(rgb[:, :, :1], 3, axis=2))


def test_mask_and_probabilities_round_trip():
    mask = np.zeros((117, 203), np.uint8)
    mask[10:50, 20:90], mask[60:100, 100:200] = 4, 9
    ids = processing.object_ids(mask)
    for engine in [(128, 208), (64, 112)]:
        pl = place(117, 203, *engine)
        planes = place_mask(mask, ids, pl)
        assert planes.shape == (2, 1, *engine) and planes.dtype == np.float32
        bg = 1 - planes.sum(0)
        if pl.resized:
            out = resample_on_host(resample_plan(engine, pl), bg[None], planes)
            prob = np.concatenate([out["frame_background"], out["frame_objects"]])[:, 0]
        else:
            prob = processing.unpad(np.concatenate([bg, planes[:, 0]]), pl.padding)
        assert prob.shape == (3, 117, 203) and prob.dtype == np.float32
        agree = (np.concatenate([[0], ids])[prob.argmax(0)] == mask).mean()
        assert agree == 1.0 if not pl.resized else agree > 0.98


def test_frame_size_checks():
    assert frame_size(np.zeros((4, 5), np.uint8)) == (4, 5)
    for bad in [np.zeros((4, 5, 2), np.uint8), np.zeros((4, 5, 3), np.uint16), np.zeros((0, 5, 3), np.uint8)]:
        with pytest.raises(ValueError):
            frame_size(bad)
