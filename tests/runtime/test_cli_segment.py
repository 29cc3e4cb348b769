"""simvos-segment: folders and videos in, DAVIS-layout palette PNGs (and an overlay) out."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from PIL import Image
from videos import SMALL, moving_video

from simvos_trt.cli.segment import build_parser, main
from simvos_trt.runtime import VideoSegmenter
from simvos_trt.runtime.png import read_index_png, write_index_png

H, W = SMALL


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """Frames named 8..12 (natural order differs from string order), a palette mask with ids 5 and 130."""
    root = tmp_path_factory.mktemp("clip")
    frames, mask = moving_video(5, H, W, objects=2, seed=3)
    lut = np.zeros(256, np.uint8)
    lut[[1, 2]] = [5, 130]
    mask = lut[mask]
    (root / "frames").mkdir()
    names = [str(8 + i) for i in range(len(frames))]
    for name, f in zip(names, frames, strict=True):
        cv2.imwrite(str(root / "frames" / f"{name}.png"), f[:, :, ::-1])
    palette = np.random.default_rng(1).integers(0, 256, (256, 3), dtype=np.uint8)
    write_index_png(root / "mask.png", mask, palette)
    return root, frames, mask, names, palette


def cli(small_export, clip_root, *extra):
    return main(["--engine-dir", str(small_export.folder), "--mask", str(clip_root / "mask.png"),
                 "--threads", "2", *extra])


def test_folder_of_frames(small_export, clip, tmp_path, capsys):
    root, frames, mask, names, palette = clip
    out = tmp_path / "out"
    assert cli(small_export, root, "--input", str(root / "frames"), "--out", str(out), "--no-progress") == 0
    std = capsys.readouterr()
    assert std.err == ""
    assert "5 frames, 2 objects" in std.out and "ms/frame mean" in std.out and "p90" in std.out
    assert sorted(p.name for p in out.iterdir()) == sorted([".simvos-trt.json", *(f"{n}.png" for n in names)])
    with VideoSegmenter.open(small_export.folder, "onnxruntime", threads=2) as seg:
        expected = list(seg.segment(frames, mask))
    for name, labels in zip(names, expected, strict=True):
        img = read_index_png(out / f"{name}.png")
        np.testing.assert_array_equal(img.labels, labels)
        np.testing.assert_array_equal(img.palette, palette)


def test_video_with_overlay_and_json(small_export, clip, tmp_path, capsys):
    root, frames, *_ = clip
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 12, (W, H))
    for f in frames:
        writer.write(np.ascontiguousarray(f[:, :, ::-1]))
    writer.release()
    out, overlay = tmp_path / "masks", tmp_path / "overlay.mp4"
    args = ["--input", str(video), "--out", str(out), "--overlay", str(overlay), "--json"]
    assert cli(small_export, root, *args) == 0
    std = capsys.readouterr()
    summary = json.loads(std.out)
    assert summary["frames"] == 5 and summary["objects"] == 2 and summary["backend"] == "onnxruntime"
    assert summary["ms_per_frame_mean"] > 0 and "frames/s" in std.err
    assert sorted(p.name for p in out.glob("*.png")) == [f"{i:05d}.png" for i in range(5)]
    cap = cv2.VideoCapture(str(overlay))
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "masks", "overlay.mp4"]


@pytest.mark.parametrize("case, match", [
    ("no_engine", "does not exist; run simvos-export"),
    ("colour_mask", "colour image"),
    ("mask_size", "differs from the first frame's"),
    ("no_input", "does not exist; give a folder of frames or a video"),
    ("torch_without_weights", "pass model="),
])
def test_errors_are_one_line_exit_2(case, match, small_export, clip, tmp_path, capsys):
    root = clip[0]
    argv = ["--engine-dir", str(small_export.folder), "--input", str(root / "frames"),
            "--mask", str(root / "mask.png"), "--out", str(tmp_path / "o"), "--no-progress"]
    if case == "no_engine":
        argv[1] = str(tmp_path / "nothing")
    elif case == "colour_mask":
        cv2.imwrite(str(tmp_path / "rgb.png"), np.zeros((H, W, 3), np.uint8))
        argv[5] = str(tmp_path / "rgb.png")
    elif case == "mask_size":
        write_index_png(tmp_path / "small.png", np.ones((H, W - 1), np.uint8))
        argv[5] = str(tmp_path / "small.png")
    elif case == "no_input":
        argv[3] = str(tmp_path / "missing")
    else:
        pytest.importorskip("torch")
        data = json.loads((small_export.folder / "manifest.json").read_text())
        assert data["checkpoint"]["kind"] == "random"  # rebuildable: use a copy without the seed
        folder = shutil.copytree(small_export.folder, tmp_path / "export")
        data["checkpoint"] = {"kind": "official"}
        (folder / "manifest.json").write_text(json.dumps(data))
        argv[1] = str(folder)
        argv += ["--backend", "torch"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("simvos-segment: error: ") and match in err


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for action in build_parser()._actions:
        for flag in action.option_strings:
            assert flag in text
        assert action.help
    assert "--no-bgr" in text and "--no-progress" in text


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("simvos-segment: error: "), err
    return err


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_frames_folder_as_out_is_refused(small_export, clip, tmp_path, capsys):
    root = clip[0]
    frames = shutil.copytree(root / "frames", tmp_path / "frames")
    before = snapshot(frames)
    for out in (frames, frames / "masks", tmp_path):
        assert cli(small_export, root, "--input", str(frames), "--out", str(out), "--force", "--no-progress") == 2
        assert "the input" in one_line_error(capsys)
    assert snapshot(frames) == before


def test_out_of_other_files_or_another_video(small_export, clip, tmp_path, capsys):
    root, _, _, names, _ = clip
    out = tmp_path / "out"
    out.mkdir()
    (out / "holiday.png").write_bytes(b"user's picture")
    argv = ["--input", str(root / "frames"), "--out", str(out), "--no-progress"]
    assert cli(small_export, root, *argv, "--force") == 2
    assert "did not write; it is left alone" in one_line_error(capsys)
    assert snapshot(out) == {"holiday.png": b"user's picture"}
    (out / "holiday.png").unlink()
    assert cli(small_export, root, *argv) == 0
    (out / "999.png").write_bytes(b"a stale mask of this video")
    assert cli(small_export, root, *argv) == 0  # the same video again: old masks replaced
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"{n}.png" for n in names)
    other = shutil.copytree(root / "frames", tmp_path / "other")
    (other / "8.png").unlink()
    argv[1] = str(other)
    assert cli(small_export, root, *argv) == 2
    assert f"already holds the output of video {root / 'frames'}; pass --force" in one_line_error(capsys)
    assert cli(small_export, root, *argv, "--force") == 0
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"{n}.png" for n in names[1:])  # nothing stale


def test_first_mask_kept_with_the_frames_is_not_segmented(small_export, clip, tmp_path, capsys):
    root, _, _, names, _ = clip
    frames = shutil.copytree(root / "frames", tmp_path / "frames")
    shutil.copy(root / "mask.png", frames / "mask.png")
    out = tmp_path / "out"
    argv = ["--engine-dir", str(small_export.folder), "--input", str(frames), "--mask", str(frames / "mask.png"),
            "--out", str(out), "--no-progress", "--threads", "2"]
    assert main(argv) == 0
    assert f"{len(names)} frames" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"{n}.png" for n in names)


def test_damaged_input_is_an_error(small_export, clip, tmp_path, capsys):
    root, frames, *_ = clip
    jpgs = tmp_path / "jpgs"
    jpgs.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(jpgs / f"{i:05d}.jpg"), f[:, :, ::-1])
    data = (jpgs / "00002.jpg").read_bytes()
    (jpgs / "00002.jpg").write_bytes(data[: len(data) // 2])
    assert cli(small_export, root, "--input", str(jpgs), "--out", str(tmp_path / "a"), "--no-progress") == 2
    assert "00002.jpg is damaged or not an image" in one_line_error(capsys)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 12, (W, H))
    for f in [*frames, *frames]:
        writer.write(np.ascontiguousarray(f[:, :, ::-1]))
    writer.release()
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    assert cli(small_export, root, "--input", str(video), "--out", str(tmp_path / "b"), "--no-progress") == 2
    assert "of its 10 frames (truncated or damaged)" in one_line_error(capsys)


def test_lossy_mask_threads_and_overlay(small_export, clip, tmp_path, capsys):
    root, frames, mask, *_ = clip
    Image.fromarray(mask).save(tmp_path / "mask.jpg", quality=95)
    argv = ["--engine-dir", str(small_export.folder), "--input", str(root / "frames"), "--out", str(tmp_path / "o"),
            "--no-progress"]
    assert main([*argv, "--mask", str(tmp_path / "mask.jpg")]) == 2
    assert "masks must be lossless" in one_line_error(capsys)
    argv += ["--mask", str(root / "mask.png")]
    assert main([*argv, "--threads", "-3"]) == 2
    assert "threads: got -3, expected an int >= 1" in one_line_error(capsys)
    assert main([*argv, "--overlay", str(root / "mask.png")]) == 2
    assert "--overlay" in one_line_error(capsys) and read_index_png(root / "mask.png").labels.shape == (H, W)
    overlay = tmp_path / "new" / "folder" / "overlay.mp4"
    assert main([*argv, "--overlay", str(overlay), "--threads", "2"]) == 0
    assert overlay.stat().st_size > 0


def sparse_annotations(clip, folder):
    """Masks named after frames 8 (first: id 5 only) and 10 (id 130 joins, id 5 corrected) in ``folder``."""
    root, frames, mask, names, palette = clip
    folder.mkdir()
    first = np.where(mask == 5, 5, 0).astype(np.uint8)
    later = np.where(np.roll(mask, 2, axis=1) > 0, np.roll(mask, 2, axis=1), 0).astype(np.uint8)
    write_index_png(folder / "8.png", first, palette)
    write_index_png(folder / "10.png", later, palette)
    return {0: first, 2: later}


@pytest.mark.parametrize("how", ["--mask", "--masks"])
def test_later_masks_join_and_correct_objects(how, small_export, clip, tmp_path, capsys):
    root, frames, mask, names, palette = clip
    masks = sparse_annotations(clip, tmp_path / "ann")
    given = (["--mask", str(tmp_path / "ann" / "10.png"), "--mask", str(tmp_path / "ann" / "8.png")]
             if how == "--mask" else ["--masks", str(tmp_path / "ann")])
    argv = ["--engine-dir", str(small_export.folder), "--input", str(root / "frames"), "--out",
            str(tmp_path / "out"), "--threads", "2", "--no-progress", *given]
    assert main(argv) == 0
    assert "5 frames, 2 objects" in capsys.readouterr().out
    with VideoSegmenter.open(small_export.folder, "onnxruntime", threads=2) as seg:
        expected = list(seg.segment(frames, masks))
    for name, labels in zip(names, expected, strict=True):
        np.testing.assert_array_equal(read_index_png(tmp_path / "out" / f"{name}.png").labels, labels)
    assert set(np.unique(expected[1])) <= {0, 5} and (expected[2][masks[2] == 130] == 130).all()


def test_frames_before_the_first_mask_have_no_object(small_export, clip, tmp_path, capsys):
    root, frames, mask, names, palette = clip
    write_index_png(tmp_path / "10.png", mask, palette)
    argv = ["--engine-dir", str(small_export.folder), "--input", str(root / "frames"), "--out",
            str(tmp_path / "out"), "--threads", "2", "--no-progress", "--mask", str(tmp_path / "10.png"),
            "--mask", str(tmp_path / "10.png")]
    assert main(argv) == 2
    assert "several masks annotate frames ['10']" in one_line_error(capsys)
    assert main(argv[:-2]) == 0  # one mask named after frame 10: frames 8 and 9 have no object
    capsys.readouterr()
    assert not read_index_png(tmp_path / "out" / "9.png").labels.any()
    np.testing.assert_array_equal(read_index_png(tmp_path / "out" / "10.png").labels, mask)


def test_a_mask_naming_no_frame_is_refused_before_anything_is_written(small_export, clip, tmp_path, capsys):
    root, frames, mask, names, palette = clip
    sparse_annotations(clip, tmp_path / "ann")
    shutil.copy(tmp_path / "ann" / "10.png", tmp_path / "ann" / "77.png")
    out = tmp_path / "out"
    argv = ["--engine-dir", str(small_export.folder), "--input", str(root / "frames"), "--out", str(out),
            "--no-progress", "--masks", str(tmp_path / "ann")]
    assert main(argv) == 2
    assert "masks ['77'] name no frame" in one_line_error(capsys) and not out.exists()
