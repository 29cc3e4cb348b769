"""Index PNGs: palette and grayscale masks read as indices, palette PNGs written atomically."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from simvos_trt.errors import InputError
from simvos_trt.runtime.png import davis_palette, encode_index_png, read_index_png, write_index_png


def test_davis_palette_known_entries():
    pal = davis_palette()
    assert pal.shape == (256, 3) and pal.dtype == np.uint8
    assert pal[0].tolist() == [0, 0, 0] and pal[1].tolist() == [128, 0, 0] and pal[2].tolist() == [0, 128, 0]
    assert pal[3].tolist() == [128, 128, 0] and pal[255].tolist() == [224, 224, 192]


def test_grayscale_png_written_by_opencv(tmp_path):
    y, x = np.mgrid[:61, :97]
    labels = ((x * 3 + y * 7) // 5 % 256).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), labels)
    img = read_index_png(tmp_path / "g.png")
    assert img.palette is None
    np.testing.assert_array_equal(img.labels, labels)


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_low_bit_depth_palette_pngs(bits, tmp_path):
    labels = np.random.default_rng(bits).integers(0, 2**bits, (13, 21), dtype=np.uint8)
    img = Image.frombytes("P", (21, 13), labels.tobytes())
    img.putpalette(davis_palette()[: 2**bits].tobytes())
    img.save(tmp_path / "p.png", bits=bits)
    np.testing.assert_array_equal(read_index_png(tmp_path / "p.png").labels, labels)


def test_write_read_round_trip_keeps_palette(tmp_path):
    labels = np.zeros((17, 29), np.uint8)
    labels[3:9, 4:20], labels[10:, 22:] = 3, 200
    palette = np.random.default_rng(0).integers(0, 256, (256, 3), dtype=np.uint8)
    write_index_png(tmp_path / "m.png", labels, palette)
    img = read_index_png(tmp_path / "m.png")
    np.testing.assert_array_equal(img.labels, labels)
    np.testing.assert_array_equal(img.palette, palette)
    assert [p.name for p in tmp_path.iterdir()] == ["m.png"]  # no temporary file left
    (tmp_path / "x.png").write_bytes(encode_index_png(labels, palette[:4]))
    short = read_index_png(tmp_path / "x.png")
    np.testing.assert_array_equal(short.palette[:4], palette[:4])
    np.testing.assert_array_equal(short.palette[200], davis_palette()[200])


def test_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_index_png(tmp_path / "none.png")
    (tmp_path / "t.png").write_text("not an image")
    with pytest.raises(InputError, match="cannot read"):
        read_index_png(tmp_path / "t.png")
    cv2.imwrite(str(tmp_path / "c.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(InputError, match=r"colour image \(RGB\), not an index mask"):
        read_index_png(tmp_path / "c.png")
    with pytest.raises(InputError, match="uint8"):
        encode_index_png(np.zeros((4, 4), np.int32))


def test_masks_must_be_lossless(tmp_path):
    """A JPEG of a 2-object mask decodes with extra ids along the edges: refused, whatever its name."""
    mask = np.zeros((32, 48), np.uint8)
    mask[4:20, 4:20], mask[10:30, 24:44] = 1, 2
    for name in ("m.jpg", "m.png"):
        Image.fromarray(mask).save(tmp_path / name, format="JPEG", quality=95)
        assert len(np.unique(np.array(Image.open(tmp_path / name)))) > 3  # what reading it would have given
        with pytest.raises(InputError, match="is a JPEG image, not a PNG: masks must be lossless"):
            read_index_png(tmp_path / name)


def test_one_bit_and_sixteen_bit_pngs(tmp_path):
    Image.fromarray(np.eye(4, dtype=bool)).save(tmp_path / "b.png")
    np.testing.assert_array_equal(read_index_png(tmp_path / "b.png").labels, np.eye(4, dtype=np.uint8))
    Image.fromarray(np.full((4, 4), 300, np.uint16)).save(tmp_path / "w.png")
    with pytest.raises(InputError, match="image of more than 8 bits, not an index mask"):
        read_index_png(tmp_path / "w.png")



@pytest.mark.parametrize("size", [(1, 1), (7, 300), (135, 240)])
def test_encoded_pngs_are_valid_for_pillow_and_opencv(size, tmp_path):
    labels = np.random.default_rng(size[1]).integers(0, 256, size, dtype=np.uint8)
    labels[: size[0] // 2] = 7  # runs, as masks have
    path = tmp_path / "m.png"
    path.write_bytes(encode_index_png(labels))
    with Image.open(path) as img:
        img.verify()  # chunk CRCs and structure
    with Image.open(path) as img:
        assert img.mode == "P" and img.size == (size[1], size[0])
        np.testing.assert_array_equal(np.array(img), labels)
    colours = cv2.imread(str(path))  # OpenCV expands the palette: (H, W, 3) BGR
    np.testing.assert_array_equal(colours, davis_palette()[labels][:, :, ::-1])
