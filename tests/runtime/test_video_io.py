"""The one frame reader: damaged frames and short videos are errors, the first mask is not a frame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from simvos_trt.errors import InputError
from simvos_trt.runtime.video_io import FrameSource, read_frame


def smooth_image(seed: int = 0) -> np.ndarray:
    g = np.random.default_rng(seed)
    return cv2.GaussianBlur(g.integers(0, 256, (64, 96, 3), dtype=np.uint8), (9, 9), 3)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_truncated_frame_is_an_error_not_a_grey_frame(tmp_path, suffix):
    whole = tmp_path / f"whole{suffix}"
    cv2.imwrite(str(whole), smooth_image())
    np.testing.assert_array_equal(read_frame(whole), cv2.imread(str(whole)))  # OpenCV's pixels, unchanged
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(InputError, match=f"frame {cut} is damaged or not an image.*truncated"):
        read_frame(cut)
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(InputError, match="damaged or not an image"):
        read_frame(tmp_path / "text.jpg")


def test_a_folder_with_a_truncated_frame_fails_at_that_frame(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:05d}.jpg"), smooth_image(i))
    data = (tmp_path / "00001.jpg").read_bytes()
    (tmp_path / "00001.jpg").write_bytes(data[: len(data) - 200])
    frames = iter(FrameSource(tmp_path))
    assert next(frames)[0] == "00000"
    with pytest.raises(InputError, match="00001.jpg is damaged"):
        next(frames)


def write_video(path, count: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 12, (96, 64))
    for i in range(count):
        writer.write(smooth_image(i))
    writer.release()


def test_a_truncated_video_is_an_error_after_the_frames_it_has(tmp_path):
    whole, cut = tmp_path / "v.avi", tmp_path / "cut.avi"
    write_video(whole, 8)
    assert len(list(FrameSource(whole))) == 8
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    source = FrameSource(cut)
    assert source.count == 8
    seen = []
    with pytest.raises(InputError, match=r"ends after \d of its 8 frames \(truncated or damaged\)"):
        for name, _ in source:
            seen.append(name)
    assert 0 < len(seen) < 8


def test_the_first_mask_beside_the_frames_is_not_a_frame(tmp_path):
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"{i}.png"), smooth_image(i))
    cv2.imwrite(str(tmp_path / "mask.png"), np.zeros((64, 96), np.uint8))
    assert [n for n, _ in FrameSource(tmp_path)] == ["0", "1", "mask"]
    assert [n for n, _ in FrameSource(tmp_path, exclude=[tmp_path / "mask.png"])] == ["0", "1"]


def test_frames_that_share_a_name_are_an_error(tmp_path):
    for name in ("0.png", "0.jpg", "1.png", "2.png", "2.jpeg"):
        cv2.imwrite(str(tmp_path / name), smooth_image(0))
    with pytest.raises(InputError, match=r"several frames share a name \['0', '2'\]"):
        FrameSource(tmp_path)


def test_bytes_after_the_end_marker_are_accepted_and_the_frame_decoded_once(tmp_path, monkeypatch):
    path = tmp_path / "tail.jpg"
    cv2.imwrite(str(path), smooth_image())
    expected = cv2.imread(str(path))
    path.write_bytes(path.read_bytes() + b"\0" * 16)  # some writers pad files
    decodes = []
    real = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decodes.append(1) or real(*a))
    np.testing.assert_array_equal(read_frame(path), expected)
    assert decodes == [1]
