"""simvos-batch: many videos without scoring, from a root folder or a list file; the same PNGs as the DAVIS run
of the same frames and masks; errors in one line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from batch_helpers import SEQUENCES, outputs

from simvos_trt.cli.batch import main

NAMES = [f"synthetic-{i:03d}" for i in range(SEQUENCES)]


def youtube_layout(davis: Path, root: Path) -> Path:
    """The DAVIS frames and annotations as root/JPEGImages/<video>/ and root/Annotations/<video>/ (links)."""
    root.mkdir()
    for kind in ("JPEGImages", "Annotations"):
        (root / kind).symlink_to(davis / kind / "480p", target_is_directory=True)
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
