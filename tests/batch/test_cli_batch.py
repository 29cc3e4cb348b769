"""simvos-batch: many videos without scoring, from a root folder or a list file; the same PNGs as the DAVIS run
of the same frames and masks; errors in one line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from batch_helpers import SEQUENCES, outputs
from PIL import Image

from simvos_trt.cli.batch import main
from simvos_trt.runtime.png import write_index_png

NAMES = [f"synthetic-{i:03d}" for i in range(SEQUENCES)]


def youtube_layout(davis: Path, root: Path) -> Path:
    """The DAVIS frames as root/JPEGImages/<video>/ (a link) and each first annotation in root/Annotations/<video>/."""
    root.mkdir()
    (root / "JPEGImages").symlink_to(davis / "JPEGImages" / "480p", target_is_directory=True)
    for name in NAMES:
        (root / "Annotations" / name).mkdir(parents=True)
        shutil.copy(davis / "Annotations" / "480p" / name / "00000.png", root / "Annotations" / name)
    return root


def test_a_root_on_two_workers_gives_the_davis_runs_pngs(davis, export, reference, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--engine-dir", str(export), "--backend", "onnxruntime", "--videos",
            str(youtube_layout(davis, tmp_path / "videos")), "--out", str(out), "--json"]
    assert main([*argv, "--workers", "2"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert outputs(out) == outputs(reference)
    assert (summary["videos"], summary["segmented"], summary["frames"]) == (SEQUENCES, SEQUENCES, SEQUENCES * 6)
    assert {r["worker"].split(" (")[0] for r in summary["runs"]} == {"process 1", "process 2"}
    assert captured.err.count(" frames/s, process ") == SEQUENCES
    assert main([*argv, "--no-progress"]) == 0  # resumes: nothing left to do
    again = json.loads(capsys.readouterr().out)
    assert again["segmented"] == 0 and all(r["skipped"] for r in again["runs"])


def test_a_list_file(davis, export, reference, tmp_path, capsys):
    listing = tmp_path / "videos.txt"
    frames, masks = davis / "JPEGImages" / "480p", davis / "Annotations" / "480p"
    listing.write_text("# frames\tfirst mask\n\n" + "".join(f"{frames / n}\t{masks / n / '00000.png'}\n"
                                                            for n in NAMES[:2]))
    out = tmp_path / "out"
    assert main(["--engine-dir", str(export), "--backend", "onnxruntime", "--videos", str(listing), "--out",
                 str(out), "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith("simvos-batch: 2 of 2 videos segmented (12 frames, ")
    assert outputs(out) == {k: v for k, v in outputs(reference).items() if k.split("/")[0] in NAMES[:2]}


@pytest.mark.parametrize("lines, message", [
    ("a\n", r"line 1: expected FRAMES and MASK \(tab-separated\), got 1 fields"),
    ("{f}\t{m}\n{f}\t{m}\n", r"line 2: a second video named 'synthetic-000'"),
    ("{f}\tnothing.png\n", r"line 1: mask .*nothing.png does not exist"),
])
def test_bad_list_files(davis, export, tmp_path, capsys, lines, message):
    f, m = davis / "JPEGImages" / "480p" / NAMES[0], davis / "Annotations" / "480p" / NAMES[0] / "00000.png"
    (tmp_path / "videos.txt").write_text(lines.format(f=f, m=m))
    assert main(["--engine-dir", str(export), "--videos", str(tmp_path / "videos.txt"), "--out",
                 str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("simvos-batch: error: --videos ")
    assert re.search(message, err), err


def test_a_folder_that_is_not_a_root(davis, export, tmp_path, capsys):
    root = youtube_layout(davis, tmp_path / "videos")
    assert main(["--engine-dir", str(export), "--videos", str(root / "JPEGImages"), "--out",
                 str(tmp_path / "out")]) == 2
    assert "no JPEGImages folder" in capsys.readouterr().err


def test_objects_join_at_the_frames_of_later_masks(davis, export, tmp_path, capsys):
    """YouTube-VOS: a mask on a later frame brings its objects in there (issue 18's ``step(frame, mask)``)."""
    from simvos_trt.runtime import VideoSegmenter

    root = youtube_layout(davis, tmp_path / "videos")
    truth = np.array(Image.open(davis / "Annotations" / "480p" / NAMES[0] / "00003.png"))
    joining = np.where(truth == 2, 7, 0).astype(np.uint8)  # object 2 of frame 3 joins as a new id, 7
    write_index_png(root / "Annotations" / NAMES[0] / "00003.png", joining)
    out = tmp_path / "out"
    assert main(["--engine-dir", str(export), "--backend", "onnxruntime", "--threads", "1", "--videos", str(root),
                 "--out", str(out), "--no-progress"]) == 0
    frames = [cv2.imread(str(p)) for p in sorted((davis / "JPEGImages" / "480p" / NAMES[0]).glob("*.jpg"))]
    first = np.array(Image.open(root / "Annotations" / NAMES[0] / "00000.png"))
    with VideoSegmenter.open(export, "onnxruntime", threads=1) as seg:
        expected = list(seg.segment(frames, {0: first, 3: joining}, bgr=True))
    got = [np.array(Image.open(out / NAMES[0] / f"{t:05d}.png")) for t in range(len(frames))]
    for t, (labels, want) in enumerate(zip(got, expected, strict=True)):
        np.testing.assert_array_equal(labels, want, err_msg=f"frame {t}")
    assert not (got[2] == 7).any() and (got[3] == 7).sum() == (joining == 7).sum()


def test_a_later_mask_that_names_no_frame(davis, export, tmp_path, capsys):
    root = youtube_layout(davis, tmp_path / "videos")
    shutil.copy(root / "Annotations" / NAMES[1] / "00000.png", root / "Annotations" / NAMES[1] / "00099.png")
    assert main(["--engine-dir", str(export), "--videos", str(root), "--out", str(tmp_path / "out")]) == 2
    assert f"video {NAMES[1]}: masks ['00099.png'] name no frame" in capsys.readouterr().err


def test_a_roots_first_frame_is_the_first_in_natural_order(tmp_path):
    """Frames 9.jpg and 10.jpg: 9 comes first (FrameSource's order), so its mask is the video's first mask."""
    from simvos_trt.batch import videos_plan

    folder = tmp_path / "root" / "JPEGImages" / "clip"
    folder.mkdir(parents=True)
    for stem in ("9", "10"):
        cv2.imwrite(str(folder / f"{stem}.jpg"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "root" / "Annotations" / "clip").mkdir(parents=True)
    write_index_png(tmp_path / "root" / "Annotations" / "clip" / "9.png", np.ones((8, 8), np.uint8))
    plan = videos_plan(tmp_path / "root")
    assert plan.task.videos["clip"].mask.name == "9.png"
