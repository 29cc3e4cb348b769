"""simvos-eval --youtube-root without a model: the layout read and written, the masks given to the runtime, the
zip, resuming, J&F against the metrics functions, and the bad inputs.

Segmentation runs through a stand-in segmenter (``VideoSegmenter.open`` patched) whose session keeps every
mask it was given (each pixel the last id stated there), so these tests need neither torch nor an export;
``test_youtube_end_to_end.py`` runs the real graphs.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fake_segmenter import patch_open
from PIL import Image
from synthetic_youtube import STEP, SyntheticVideo, make_youtube, reference_scores

from simvos_trt.cli.eval import main
from simvos_trt.errors import InputError
from simvos_trt.runtime.png import write_index_png

T, H, W = 31, 48, 64
LISTED = [f"{t:05d}" for t in range(0, T, STEP)]
EVERY = [f"{t:05d}" for t in range(T)]
LIMIT = 3  # objects the stand-in session takes


class StickySession:
    """Labels: every mask stated so far, each pixel the last id stated there; logs (frame mean, ids stated)."""

    def __init__(self, log: list[tuple[str, list[int] | None]], fail_after: int | None) -> None:
        self.log, self.fail_after, self.labels = log, fail_after, None

    def _state(self, mask: np.ndarray | None) -> np.ndarray:
        if mask is not None:
            self.labels = np.where(mask > 0, mask, self.labels)
        return self.labels.copy()

    def start(self, frame: np.ndarray, mask: np.ndarray, *, bgr: bool = False) -> np.ndarray:
        assert bgr and frame.shape == (*mask.shape, 3)
        self.labels = np.zeros_like(mask)
        self.log.append(("start", sorted(np.unique(mask[mask > 0]).tolist())))
        return self._state(mask)

    def step(self, frame: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        if self.fail_after is not None and len(self.log) >= self.fail_after:
            raise KeyboardInterrupt
        if mask is not None and len(np.union1d(self.labels, mask)) > LIMIT + 1:  # as the runtime, which says more
            raise InputError(f"more objects than the export takes ({LIMIT}); export with a larger --max-objects")
        self.log.append(("step", None if mask is None else sorted(np.unique(mask[mask > 0]).tolist())))
        return self._state(mask)


@pytest.fixture()
def fake(monkeypatch):
    """Patch VideoSegmenter.open; returns the segmenters opened and their failure switch."""
    return patch_open(monkeypatch, StickySession)


@pytest.fixture()
def valid(tmp_path: Path) -> tuple[Path, list[SyntheticVideo]]:
    """A valid-like split: each object annotated on its first frame only."""
    return tmp_path / "yt", make_youtube(tmp_path / "yt", frames=T, height=H, width=W)


def run(root: Path, out: Path, *extra: str, split: str = "valid") -> int:
    return main(["--youtube-root", str(root), "--split", split, "--engine-dir", "engines/fake-64", "--json",
                 "--out", str(out), *extra])


def pngs(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in sorted(folder.glob("*/*.png"))}


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.mode == "P"
        return np.array(img)


def sticky(video: SyntheticVideo, t: int) -> np.ndarray:
    """What the sticky session predicts at frame t: each object's first mask, later objects on top."""
    out = np.zeros((H, W), np.uint8)
    for k, start in sorted(video.starts.items(), key=lambda kv: kv[1]):
        if start <= t:
            out = np.where(video.labels[start] == k, np.uint8(k), out)
    return out


def test_each_object_joins_on_its_first_frame_and_the_listed_frames_are_saved(valid, tmp_path, fake, capsys):
    root, videos = valid
    opened, _ = fake
    out, archive = tmp_path / "out", tmp_path / "sub" / "submission.zip"
    assert run(root, out, "--zip", str(archive)) == 0
    std = capsys.readouterr()
    s = json.loads(std.out)
    assert s["global"] is None and s["csv"] is None and s["zip"] == {"path": str(archive), "pngs": 2 * len(LISTED)}
    assert "[1/2] synthetic-000: 7 frames" in std.err and "[2/2] synthetic-001: 7 frames" in std.err
    # video 0: objects at 0, 10, 25; video 1: two objects share frame 5, one joins at 20, frame 0 is not segmented
    assert opened[0].frames == [("start", [1]), ("step", None), ("step", [2]), ("step", None), ("step", None),
                             ("step", [3]), ("step", None),
                             ("start", [1, 2]), ("step", None), ("step", None), ("step", [3]), ("step", None),
                             ("step", None)]
    assert sorted(pngs(out / "Annotations")) == [f"{v.name}/{f}.png" for v in videos for f in LISTED]
    for video in videos:
        for t in video.listed:
            np.testing.assert_array_equal(read_png(out / "Annotations" / video.name / f"{t:05d}.png"), sticky(video, t))
    assert not read_png(out / "Annotations/synthetic-001/00000.png").any()  # before the first object: all 0
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
        assert names == [f"Annotations/{v.name}/{f}.png" for v in videos for f in LISTED]
        for name in names:
            assert z.read(name) == (out / name).read_bytes()
    assert [p.name for p in archive.parent.iterdir()] == ["submission.zip"]  # no temporary file left

    assert main(["--youtube-root", str(root), "--results", str(out)]) == 0
    assert "No ground truth beyond each object's first mask in split valid" in capsys.readouterr().out


def test_all_frames_are_segmented_and_the_listed_ones_saved(valid, tmp_path, fake, capsys):
    root, videos = valid
    opened, _ = fake
    listed, every = tmp_path / "listed", tmp_path / "every"
    all_frames = root / "valid_all_frames"  # the folder itself: its JPEGImages is found
    assert run(root, listed) == 0
    assert run(root, every, "--all-frames", str(all_frames)) == 0
    assert len(opened[1].frames) == T + (T - 5)  # video 1 starts at frame 5
    assert [e for e in opened[1].frames if e[1]] == [("start", [1]), ("step", [2]), ("step", [3]), ("start", [1, 2]),
                                                  ("step", [3])]
    assert sorted(pngs(every / "Annotations")) == sorted(pngs(listed / "Annotations"))
    capsys.readouterr()
    # another choice of frames gives other predictions: refused in the same folder, replaced with --force
    assert run(root, listed, "--all-frames", str(all_frames / "JPEGImages")) == 2
    assert "already holds the output of export 0123456789ab on fake, YouTube-VOS valid, the listed frames" in (
        capsys.readouterr().err)
    assert run(root, every, "--all-frames", str(all_frames), "--save-all") == 0
    assert len(opened[3].frames) == 2 * T - 5, "videos missing PNGs are redone"
    assert sorted(pngs(every / "Annotations")) == [f"{v.name}/{f}.png" for v in videos for f in EVERY]
    capsys.readouterr()
    assert run(root, every, "--all-frames", str(all_frames), "--save-all") == 0
    assert "skipped, all 31 PNGs present" in capsys.readouterr().err and len(opened[4].frames) == 0


def test_resume_after_an_interruption_and_an_incomplete_video(valid, tmp_path, fake, capsys):
    root, _ = valid
    opened, fail = fake
    out = tmp_path / "out"
    fail["after"] = 7 + 2  # video 1 stops at frame 00015 (its 3rd step; frame 00000 is not segmented)
    assert run(root, out) == 130
    assert "interrupted" in capsys.readouterr().err
    assert sorted(p.stem for p in (out / "Annotations/synthetic-001").iterdir()) == LISTED[:3]
    fail["after"] = None
    before = pngs(out / "Annotations")
    assert run(root, out) == 0
    err = capsys.readouterr().err
    assert "synthetic-000: skipped, all 7 PNGs present" in err and "[2/2] synthetic-001: 7 frames" in err
    assert all(pngs(out / "Annotations")[k] == v for k, v in before.items() if k.startswith("synthetic-000"))
    (out / "Annotations/synthetic-000/00010.png").unlink()
    (out / "Annotations/synthetic-000/.00010.png.x.tmp").write_bytes(b"half a png")
    assert run(root, out) == 0
    err = capsys.readouterr().err
    assert "[1/2] synthetic-000: 7 frames" in err and "synthetic-001: skipped" in err
    assert not list(out.glob("Annotations/*/.*.tmp")) and len(pngs(out / "Annotations")) == 2 * len(LISTED)


# ---------------------------------------------------------------- J&F where ground truth exists


def write_results(folder: Path, preds: dict[str, dict[int, np.ndarray]]) -> None:
    for name, frames in preds.items():
        (folder / "Annotations" / name).mkdir(parents=True, exist_ok=True)
        for t, labels in frames.items():
            write_index_png(folder / "Annotations" / name / f"{t:05d}.png", labels)


def test_j_and_f_per_object_after_its_first_appearance(tmp_path, capsys):
    root = tmp_path / "yt"
    videos = make_youtube(root, split="train", frames=T, height=H, width=W, dense=True)
    preds = {v.name: {t: v.labels[t].copy() for t in v.listed} for v in videos}
    preds["synthetic-000"][15][preds["synthetic-000"][15] == 2] = 0  # object 2 lost on one frame
    preds["synthetic-000"][30][:10, :10] = 3  # a stray box of object 3
    preds["synthetic-001"][5][:] = 0  # frame 5 is the objects' first: not scored
    preds["synthetic-001"][25][preds["synthetic-001"][25] == 1] = 2  # 1 taken for 2
    results = tmp_path / "results"
    write_results(results, preds)
    assert main(["--youtube-root", str(root), "--split", "train", "--results", str(results), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    want_global, want = reference_scores(videos, preds)
    assert list(s["global"].values()) == pytest.approx(want_global, abs=1e-12)
    assert [o["object"] for o in s["per_sequence"]] == [f"synthetic-00{i}_{k}" for i in (0, 1) for k in (1, 2, 3)]
    for o in s["per_sequence"]:
        assert (o["J-Mean"], o["F-Mean"]) == pytest.approx(want[o["object"]], abs=1e-12), o
    assert want["synthetic-000_2"][0] < 1 and want["synthetic-001_1"][0] < 1 and want["synthetic-000_1"] == (1, 1)
    for v in s["per_video"]:  # a video's table: the means over its objects
        mine = [want[f"{v['video']}_{k}"] for k in (1, 2, 3)]
        assert v["J-Mean"] == pytest.approx(np.mean([m[0] for m in mine]), abs=1e-12)
        assert v["J&F-Mean"] == pytest.approx(np.mean([sum(m) / 2 for m in mine]), abs=1e-12)
    rows = (results / "per-sequence_results-train.csv").read_text().splitlines()
    assert rows[0] == "Sequence,J-Mean,F-Mean" and rows[2].startswith("synthetic-000_2,")
    assert (results / "global_results-train.csv").is_file()

    assert main(["--youtube-root", str(root), "--split", "train", "--results", str(results), "--per-sequence"]) == 0
    table = capsys.readouterr().out
    assert "Per-video results:" in table and "synthetic-001_3" in table

    (root / "train" / "Annotations" / "synthetic-001" / "00015.png").unlink()  # no longer every listed frame
    assert main(["--youtube-root", str(root), "--split", "train", "--results", str(results), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert [o["object"] for o in s["per_sequence"]] == ["synthetic-000_1", "synthetic-000_2", "synthetic-000_3"]
    assert s["global"]["J-Mean"] == pytest.approx(np.mean([want[f"synthetic-000_{k}"][0] for k in (1, 2, 3)]))


# ---------------------------------------------------------------- bad input: one line, exit 2, files intact


def snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("simvos-eval: error: "), err
    return err


def no_meta(root: Path) -> None:
    (root / "valid" / "meta.json").unlink()


def stray_annotation(root: Path) -> None:
    ann = root / "valid" / "Annotations" / "synthetic-001"
    (ann / "00007.png").write_bytes((ann / "00005.png").read_bytes())


def meta_without_videos(root: Path) -> None:
    (root / "valid" / "meta.json").write_text('{"videos": {}}')


def meta_video_without_frames(root: Path) -> None:
    (root / "valid" / "meta.json").write_text('{"videos": {"synthetic-000": {}, "missing": {}}}')


def annotation_of_another_size(root: Path) -> None:
    write_index_png(root / "valid" / "Annotations" / "synthetic-000" / "00010.png", np.ones((H, W + 2), np.uint8))


@pytest.mark.parametrize(("damage", "message"), [
    (no_meta, "valid/meta.json is missing; the root must hold valid/JPEGImages/<video>/*.jpg"),
    (stray_annotation, "video 'synthetic-001': annotation {root}/valid/Annotations/synthetic-001/00007.png is for "
                       "frame 00007, which is not among the video's 7 frames (00000..00030)"),
    (meta_without_videos, "meta.json lists no video"),
    (meta_video_without_frames, "1 videos of valid/meta.json have no folder in valid/JPEGImages, first 'missing'"),
    (annotation_of_another_size, f"is (48, 66) (H, W) but frame 00000 is ({H}, {W})"),
])
def test_bad_dataset_fails_before_anything_is_written(valid, tmp_path, fake, capsys, damage, message):
    root, _ = valid
    damage(root)
    before = snapshot(root)
    out, archive = tmp_path / "out", tmp_path / "a.zip"
    assert run(root, out, "--zip", str(archive)) == 2
    assert message.format(root=root) in one_line_error(capsys)
    assert not out.exists() and not archive.exists() and fake[0] == [] and snapshot(root) == before


def test_a_frame_the_runtime_refuses(tmp_path, fake, capsys):
    """An object beyond the export's limit joins at frame 15: one line naming the video and frame; the PNGs
    written before it are complete, the other video's too."""
    root = tmp_path / "yt"
    make_youtube(root, frames=16, height=H, width=W, starts=((0, 5), (0, 5, 10, 15)))
    before = snapshot(root)
    out = tmp_path / "out"
    assert run(root, out, "--no-progress") == 2
    err = one_line_error(capsys)
    assert "video 'synthetic-001', frame 00015: more objects than the export takes (3)" in err
    written = {v.name: sorted(p.stem for p in v.iterdir()) for v in sorted((out / "Annotations").iterdir())}
    assert written == {"synthetic-000": ["00000", "00005", "00010", "00015"],
                       "synthetic-001": ["00000", "00005", "00010"]}
    assert snapshot(root) == before
    # annotated on every listed frame, one new object each: valid's layout, not ground truth to score
    (root / "valid" / "meta.json").write_text('{"videos": {"synthetic-001": {}}}')
    write_results(out, {"synthetic-001": {15: np.zeros((H, W), np.uint8)}})
    assert main(["--youtube-root", str(root), "--results", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["global"] is None


def test_bad_options_and_outputs(valid, tmp_path, fake, capsys):
    root, _ = valid
    before = snapshot(root)
    all_frames = root / "valid_all_frames" / "JPEGImages"
    (all_frames / "synthetic-000" / "00020.jpg").unlink()
    assert run(root, tmp_path / "o1", "--all-frames", str(all_frames)) == 2
    assert "1 of its listed frames are not in the all-frames folder" in one_line_error(capsys)
    assert run(root, tmp_path / "o2", "--zip", str(root / "valid" / "a.zip")) == 2
    err = one_line_error(capsys)
    assert "--zip" in err and "lies inside the input" in err
    assert run(root, root / "valid" / "out", "--no-progress") == 2
    assert "lies inside the input" in one_line_error(capsys)
    with pytest.raises(SystemExit) as exit_info:
        main(["--davis-root", str(root), "--results", str(tmp_path), "--save-all"])
    assert exit_info.value.code == 2 and "--save-all is for YouTube-VOS" in capsys.readouterr().err
    assert main(["--youtube-root", str(root), "--results", str(tmp_path / "none"), "--zip", str(tmp_path / "z")]) == 2
    assert "holds no Annotations folder" in one_line_error(capsys)
    del before["valid_all_frames/JPEGImages/synthetic-000/00020.jpg"]
    assert snapshot(root) == before and not (tmp_path / "z").exists()
