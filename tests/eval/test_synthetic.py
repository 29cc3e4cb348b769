"""The synthetic DAVIS-layout generator: layout, determinism, events, and known scores."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from synthetic_davis import make_dataset

from simvos_trt.eval import davis
from simvos_trt.runtime.png import davis_palette, write_index_png


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, list]:
    root = tmp_path_factory.mktemp("synthetic")
    return root, make_dataset(root, seed=0)  # 2 sequences, 8 frames, 96x160, 3 objects


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout(dataset):
    root, made = dataset
    names = ["synthetic-000", "synthetic-001"]
    assert [s.name for s in made] == names
    assert (root / "ImageSets/2017/val.txt").read_text() == "synthetic-000\nsynthetic-001\n"
    for name in names:
        jpgs = sorted((root / "JPEGImages/480p" / name).iterdir())
        pngs = sorted((root / "Annotations/480p" / name).iterdir())
        assert [p.name for p in jpgs] == [f"{t:05d}.jpg" for t in range(8)]
        assert [p.name for p in pngs] == [f"{t:05d}.png" for t in range(8)]
        assert cv2.imread(str(jpgs[0])).shape == (96, 160, 3)
        first = davis.read_label_png(pngs[0])
        assert first.shape == (96, 160) and first.dtype == np.uint8
        assert sorted(np.unique(first)) == [0, 1, 2, 3]  # every object shows in frame 0


def test_annotations_are_davis_palette_pngs(dataset):
    from PIL import Image

    root, _ = dataset
    with Image.open(root / "Annotations/480p/synthetic-000/00000.png") as img:
        assert img.mode == "P"
        assert img.getpalette()[:12] == davis_palette()[:4].ravel().tolist()


def test_occlusion_and_disappearance(dataset):
    root, made = dataset
    for seq in made:
        # 8 frames: object 3 is above the frame from keyframe round(0.35 * 7) = 2 to
        # round(0.65 * 7) = 5, half-way out at frames 1 and 6.
        assert seq.absent_frames == {3: (2, 3, 4, 5)}
        assert seq.occluded_frames  # object 2 covers part of object 1 somewhere
        labels = np.stack([davis.read_label_png(p) for p in
                           sorted((root / "Annotations/480p" / seq.name).iterdir())])
        assert all((labels[t] == 1).any() for t in seq.occluded_frames)  # partly, not fully


@pytest.mark.parametrize("seed, frames, objects", [(1, 5, 3), (2, 12, 5), (3, 3, 8)])
def test_other_settings_keep_the_events(tmp_path: Path, seed: int, frames: int, objects: int):
    made = make_dataset(tmp_path, sequences=1, frames=frames, height=64, width=90,
                        objects=objects, seed=seed)[0]
    assert 3 in made.absent_frames and 0 not in made.absent_frames[3]
    assert frames - 1 not in made.absent_frames[3]
    first = davis.read_label_png(tmp_path / "Annotations/480p/synthetic-000/00000.png")
    assert sorted(np.unique(first)) == list(range(objects + 1))


def test_deterministic(tmp_path: Path, dataset):
    root, _ = dataset
    make_dataset(tmp_path / "again", seed=0)
    assert all_files(tmp_path / "again") == all_files(root)
    make_dataset(tmp_path / "other", seed=1)
    other = all_files(tmp_path / "other")
    assert other.keys() == all_files(root).keys() and other != all_files(root)


def test_arguments_are_checked(tmp_path: Path):
    with pytest.raises(ValueError, match="objects=2"):
        make_dataset(tmp_path, objects=2)
    with pytest.raises(ValueError, match="frames=2"):
        make_dataset(tmp_path, frames=2)
    with pytest.raises(ValueError, match="objects=9"):
        make_dataset(tmp_path, objects=9)


def test_ground_truth_scores_one(dataset, tmp_path: Path):
    root, _ = dataset
    ev = davis.evaluate(root, root / "Annotations/480p")
    assert ev.scores.row() == (1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0)
    g_path, _ = davis.write_csvs(ev, tmp_path)
    assert g_path.read_text().splitlines()[1] == "1.000,1.000,1.000,0.000,1.000,1.000,0.000"


def test_all_background_prediction(dataset, tmp_path: Path):
    root, made = dataset
    for seq in made:
        (tmp_path / seq.name).mkdir()
        for t in range(8):
            write_index_png(tmp_path / seq.name / f"{t:05d}.png", np.zeros((96, 160), np.uint8))
    ev = davis.evaluate(root, tmp_path)
    # Scored frames 1..6. Objects 1 and 2 are in every frame: an empty prediction gives
    # J = 0 (empty intersection) and F = 0 (predicted boundary empty, gt's not).
    # Object 3 is absent in frames 2..5: both empty there, J = F = 1; per frame
    # (0, 1, 1, 1, 1, 0): mean 4/6, recall 4/6; n = 6 bins [0:2] = (0, 1) and
    # [4:6] = (1, 0): decay 0.5 - 0.5 = 0.
    for o in ev.objects:
        expected = [1.0, 1.0, 1.0, 1.0] if o.object_id == 3 else [0.0] * 4
        np.testing.assert_array_equal(o.j, [0.0, *expected, 0.0])
        np.testing.assert_array_equal(o.f, o.j)
    # 6 objects: J-Mean = (0 + 0 + 2/3) * 2 / 6 = 2/9, same recall, decay 0; F the same.
    assert ev.scores.row() == pytest.approx((2 / 9, 2 / 9, 2 / 9, 0, 2 / 9, 2 / 9, 0))
    g_path, s_path = davis.write_csvs(ev, tmp_path)
    assert g_path.read_text().splitlines()[1] == "0.222,0.222,0.222,0.000,0.222,0.222,0.000"
    assert s_path.read_text().splitlines()[1:4] == [
        "synthetic-000_1,0.000,0.000", "synthetic-000_2,0.000,0.000",
        "synthetic-000_3,0.667,0.667"]
