"""End to end at tiny size: a synthetic YouTube-VOS split whose objects appear at frames 0, 10 and 25 -> the
tiny export on ONNX Runtime -> simvos-eval --youtube-root, against ``model.propagate`` given the same masks
(the reference) and J&F from the metrics functions.

Frames are the engine's 64x96, so the reference sees exactly the pixels the runtime does. Random weights:
the labels mean nothing, but they must be the reference's except at near-ties.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from synthetic_youtube import STEP, SyntheticVideo, make_youtube, reference_scores

from simvos_trt.cli.eval import main

pytest.importorskip("torch")
pytestmark = pytest.mark.slow

T, H, W = 26, 64, 96
NEAR_TIE = 1e-4  # fp32: the runtime's probabilities are the reference's within 1e-4


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> tuple[Path, list[SyntheticVideo]]:
    root = tmp_path_factory.mktemp("yt") / "youtube"
    return root, make_youtube(root, frames=T, height=H, width=W)


def segment(capsys, root: Path, export: Path, out: Path, *extra: str, split: str = "valid") -> dict:
    """Run simvos-eval on ONNX Runtime; its JSON summary."""
    argv = ["--youtube-root", str(root), "--split", split, "--engine-dir", str(export), "--backend", "onnxruntime",
            "--threads", "2", "--out", str(out), "--json", "--no-progress", *extra]
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def reference(model, video: SyntheticVideo, frame_dir: Path, frames: list[int]) -> dict[int, tuple[np.ndarray, ...]]:
    """Frame -> (labels, top-two gap) of ``propagate`` over ``frames`` from the first object's, given each
    object's first mask (from the generator); frames before it: all 0, no gap."""
    from simvos_trt.model import propagate

    first = min(video.starts.values())
    run = [t for t in frames if t >= first]
    rgb = np.stack([cv2.imread(str(frame_dir / f"{t:05d}.jpg"))[..., ::-1] for t in run])  # (T, H, W, 3)
    masks = {i: video.first_mask(t) for i, t in enumerate(run) if t in video.starts.values()}
    prob = propagate(model, rgb, masks)  # (T, K+1, H, W), channels: background, ids 1..K
    top2 = np.sort(prob, axis=1)[:, -2:]  # (T, 2, H, W)
    out = {t: (np.zeros((H, W), np.uint8), np.full((H, W), np.inf)) for t in frames if t < first}
    out |= {t: (prob[i].argmax(0).astype(np.uint8), top2[i, 1] - top2[i, 0]) for i, t in enumerate(run)}
    return out


def check_against_reference(out: Path, model, root: Path, videos: list[SyntheticVideo], frames: list[int],
                            frame_dir: str) -> None:
    for v in videos:
        for t, (labels, gap) in reference(model, v, root / frame_dir / v.name, frames).items():
            with Image.open(out / "Annotations" / v.name / f"{t:05d}.png") as img:
                got = np.array(img)
            differ = got != labels
            assert (gap[differ] < NEAR_TIE).all(), f"{v.name} frame {t}: {differ.sum()} pixels differ, not near-ties"


def test_listed_frames_and_the_servers_zip(valid, export, tiny_model, tmp_path, capsys):
    root, videos = valid
    out, archive = tmp_path / "out", tmp_path / "valid.zip"
    s = segment(capsys, root, export, out, "--zip", str(archive))
    listed = list(range(0, T, STEP))
    names = [f"Annotations/{v.name}/{t:05d}.png" for v in videos for t in listed]
    assert s["global"] is None and s["zip"]["pngs"] == len(names) == 12
    assert sorted(p.relative_to(out).as_posix() for p in out.glob("Annotations/*/*.png")) == names
    with zipfile.ZipFile(archive) as z:
        assert z.namelist() == names and all(z.read(n) == (out / n).read_bytes() for n in names)
    check_against_reference(out, tiny_model, root, videos, listed, "valid/JPEGImages")
    for v in videos:  # each object is there from its first frame on (tiny random weights still keep it)
        for k, start in v.starts.items():
            with Image.open(out / "Annotations" / v.name / f"{start:05d}.png") as img:
                assert (np.array(img) == k).any()


def test_every_frame_segmented_and_saved(valid, export, tiny_model, tmp_path, capsys):
    root, videos = valid
    out = tmp_path / "all"
    segment(capsys, root, export, out, "--all-frames", str(root / "valid_all_frames"), "--save-all")
    assert len(list(out.glob("Annotations/*/*.png"))) == 2 * T
    check_against_reference(out, tiny_model, root, videos, list(range(T)), "valid_all_frames/JPEGImages")


def test_scores_resume_and_force(export, tmp_path, capsys):
    root = tmp_path / "yt"
    videos = make_youtube(root, split="train", frames=T, height=H, width=W, dense=True, seed=1)
    out = tmp_path / "out"
    s = segment(capsys, root, export, out, split="train")
    preds = {v.name: {t: np.array(Image.open(out / "Annotations" / v.name / f"{t:05d}.png")) for t in v.listed}
             for v in videos}
    want_global, want = reference_scores(videos, preds)
    assert list(s["global"].values()) == pytest.approx(want_global, abs=1e-12)
    for o in s["per_sequence"]:
        assert (o["J-Mean"], o["F-Mean"]) == pytest.approx(want[o["object"]], abs=1e-12), o
    # synthetic-000's object 3 first appears on the last listed frame (25): no frame after it, no row
    assert [o["object"] for o in s["per_sequence"]] == ["synthetic-000_1", "synthetic-000_2", "synthetic-001_1",
                                                        "synthetic-001_2", "synthetic-001_3"]
    assert [v["video"] for v in s["per_video"]] == ["synthetic-000", "synthetic-001"]
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("Annotations/*/*.png")}
    again = segment(capsys, root, export, out, split="train")
    assert all(r["skipped"] for r in again["sequences"]) and again["global"] == s["global"]
    assert {p: p.stat().st_mtime_ns for p in out.glob("Annotations/*/*.png")} == stamps
    forced = segment(capsys, root, export, out, "--force", split="train")
    assert not any(r["skipped"] for r in forced["sequences"]) and forced["global"] == s["global"]


@pytest.fixture(scope="module")
def refining_export(tmp_path_factory) -> Path:
    """A tiny SimVOS with token refinement exported for at most 2 objects: its memory encoder sees every
    object of a frame, so a third object alive is refused."""
    from simvos_trt.config import SimVOSConfig
    from simvos_trt.export.onnx_export import ExportSettings, export_folder
    from simvos_trt.manifest import Weights
    from simvos_trt.model import random_model

    folder = tmp_path_factory.mktemp("e2e_export") / "tiny-tr-64x96"
    model = random_model(SimVOSConfig(backbone="tiny", layer_index=1, token_refinement=True), seed=2)
    export_folder(model, folder, ExportSettings(H, W, max_objects=2), checkpoint=Weights("random", seed=2))
    return folder


def test_a_late_object_beyond_the_exports_limit(refining_export, tmp_path, capsys):
    root = tmp_path / "yt"
    make_youtube(root, frames=16, height=H, width=W, starts=((0, 5), (0, 5, 10)))
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    argv = ["--youtube-root", str(root), "--engine-dir", str(refining_export), "--backend", "onnxruntime",
            "--threads", "2", "--out", str(out), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "video 'synthetic-001', frame 00010: " in err and "--max-objects 3" in err, err
    written = {v.name: sorted(p.stem for p in v.iterdir()) for v in sorted((out / "Annotations").iterdir())}
    assert written == {"synthetic-000": ["00000", "00005", "00010", "00015"], "synthetic-001": ["00000", "00005"]}
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
