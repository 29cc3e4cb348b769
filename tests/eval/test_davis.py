"""Reading a DAVIS root, scoring predicted PNGs, the CSV files and the error messages."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from simvos_trt.errors import InputError
from simvos_trt.eval import davis
from simvos_trt.eval.metrics import Statistics, global_scores
from simvos_trt.runtime.png import davis_palette, write_index_png


def write_sequence(root: Path, name: str, labels: np.ndarray) -> None:
    """Write (T, H, W) labels as annotations and grey JPEG frames of a DAVIS root."""
    import cv2

    img_dir = root / "JPEGImages" / "480p" / name
    ann_dir = root / "Annotations" / "480p" / name
    img_dir.mkdir(parents=True)
    ann_dir.mkdir(parents=True)
    for t, lab in enumerate(labels):
        cv2.imwrite(str(img_dir / f"{t:05d}.jpg"), np.full((*lab.shape, 3), 128, np.uint8))
        write_index_png(ann_dir / f"{t:05d}.png", lab)


def write_results(results: Path, name: str, labels: np.ndarray) -> None:
    (results / name).mkdir(parents=True)
    for t, lab in enumerate(labels):
        write_index_png(results / name / f"{t:05d}.png", lab)


@pytest.fixture()
def tiny(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    """A root with one 5-frame 6x8 sequence 'seq', two objects, and a results folder."""
    gt = np.zeros((5, 6, 8), np.uint8)
    gt[:, 1:3, 1:3] = 1  # object 1: a 2x2 square
    gt[:, 3:5, 4:8] = 2  # object 2: 2x4 block touching the right border
    root = tmp_path / "davis"
    write_sequence(root, "seq", gt)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("seq\n")
    return root, tmp_path / "results", gt


def test_palette_known_colours():
    pal = davis_palette()
    assert pal.shape == (256, 3) and pal.dtype == np.uint8
    assert pal[:5].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]
    assert pal[8].tolist() == [64, 0, 0]  # bit 3 -> bit 6 of red
    assert pal[255].tolist() == [224, 224, 192]


def test_annotation_pngs_round_trip(tmp_path: Path):
    """The runtime's mask writer gives DAVIS palette PNGs that the scorer reads back unchanged."""
    from PIL import Image

    labels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = tmp_path / "m.png"
    write_index_png(path, np.zeros((3, 4), np.uint8))
    write_index_png(path, labels)  # replaces the first file
    with Image.open(path) as img:
        assert img.mode == "P"
        assert img.getpalette()[:6] == [0, 0, 0, 128, 0, 0]
    np.testing.assert_array_equal(davis.read_label_png(path), labels)
    assert [p.name for p in tmp_path.iterdir()] == ["m.png"]  # no temporary file left


def test_perfect_and_partly_wrong_predictions(tiny):
    root, results, gt = tiny
    pred = gt.copy()
    pred[2][pred[2] == 1] = 0  # frame 2: object 1 missed
    write_results(results, "seq", pred)
    ev = davis.evaluate(root, results)
    assert [o.name for o in ev.objects] == ["seq_1", "seq_2"]
    assert [o.frames for o in ev.objects] == [("00001", "00002", "00003")] * 2  # not 0, 4
    # object 1 per frame: J = F = (1, 0, 1): mean 2/3, recall 2/3. n = 3: linspace(1, 3, 5)
    # = [1, 1.5, 2, 2.5, 3] -> edges [0, 1, 1, 2, 2], first bin [0:2] = (1, 0), last [2:3]
    # = (1): decay 0.5 - 1 = -0.5. Object 2: all ones, decay 0.
    np.testing.assert_array_equal(ev.objects[0].j, [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(ev.objects[0].f, [1.0, 0.0, 1.0])
    assert ev.objects[0].j_stats == Statistics(2 / 3, 2 / 3, -0.5)
    # global: J-Mean (2/3 + 1) / 2 = 5/6, J-Recall 5/6, J-Decay -0.5 / 2; F the same.
    assert ev.scores.row() == pytest.approx((5 / 6, 5 / 6, 5 / 6, -0.25, 5 / 6, 5 / 6, -0.25))
    g_path, s_path = davis.write_csvs(ev, results)
    assert g_path.read_text() == ("J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n"
                                  "0.833,0.833,0.833,-0.250,0.833,0.833,-0.250\n")
    assert s_path.read_text() == "Sequence,J-Mean,F-Mean\nseq_1,0.667,0.667\nseq_2,1.000,1.000\n"


def test_objects_are_ids_up_to_the_first_frames_largest(tmp_path: Path):
    gt = np.zeros((3, 6, 6), np.uint8)
    gt[:, 0:2, 0:2] = 1
    gt[:, 3:5, 3:5] = 3  # no object 2: K = 3 anyway, object 2 has an empty ground truth
    gt[:, 5, :] = 255  # void: background to every object
    gt[1, 0, 5] = 7  # an id above K in a later frame: ignored
    pred = np.where(gt == 255, 0, gt)
    pred[1, 0, 5] = 0
    root = tmp_path / "davis"
    write_sequence(root, "s", gt)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("s\n")
    write_results(tmp_path / "results", "s", pred)
    objs = davis.evaluate(root, tmp_path / "results").objects
    assert [o.object_id for o in objs] == [1, 2, 3]
    assert [float(o.j[0]) for o in objs] == [1.0, 1.0, 1.0]  # object 2: both empty -> 1
    assert davis.count_objects(np.full((2, 2), 255, np.uint8)) == 0


def test_no_objects_gives_nan_rows(tmp_path: Path):
    ev = davis.Evaluation("val", (), global_scores([], []))
    g_path, s_path = davis.write_csvs(ev, tmp_path)
    assert g_path.read_text().splitlines()[1] == ",,,,,,"  # pandas writes NaN as ''
    assert s_path.read_text() == "Sequence,J-Mean,F-Mean\n"
    assert math.isnan(ev.scores.jf_mean)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("missing", ["JPEGImages/480p", "Annotations/480p",
                                     "ImageSets/2017/val.txt"])
def test_root_without_a_folder(tiny, missing: str):
    root, results, _ = tiny
    target = root / missing
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(InputError, match=f"{missing} is missing"):
        davis.evaluate(root, results)


def test_sequence_without_first_annotation(tiny):
    root, results, _ = tiny
    (root / "Annotations/480p/seq/00000.png").unlink()
    with pytest.raises(InputError, match="sequence 'seq': frame 00000 has no first annotation"):
        davis.evaluate(root, results)


def test_sequence_with_an_unannotated_frame(tiny):
    root, results, _ = tiny
    (root / "Annotations/480p/seq/00003.png").unlink()
    with pytest.raises(InputError, match=r"1 frames have no annotation, first \['00003'\]"):
        davis.evaluate(root, results)


def test_sequence_of_mixed_sizes(tiny):
    root, results, _ = tiny
    write_index_png(root / "Annotations/480p/seq/00002.png", np.zeros((6, 9), np.uint8))
    with pytest.raises(InputError, match=r"00002.png is \(6, 9\).*must share one size"):
        davis.evaluate(root, results)


def test_missing_predictions(tiny):
    root, results, gt = tiny
    with pytest.raises(InputError, match="does not exist"):
        davis.evaluate(root, results)
    write_results(results, "seq", gt)
    (results / "seq" / "00000.png").unlink()  # first and last frames are not needed
    (results / "seq" / "00004.png").unlink()
    assert davis.evaluate(root, results).scores.jf_mean == 1.0
    (results / "seq" / "00002.png").unlink()
    with pytest.raises(InputError, match="sequence 'seq': 1 predicted PNGs missing.*00002.png"):
        davis.evaluate(root, results)


def test_prediction_of_the_wrong_size(tiny):
    root, results, gt = tiny
    write_results(results, "seq", gt)
    write_index_png(results / "seq" / "00001.png", np.zeros((12, 16), np.uint8))
    with pytest.raises(InputError, match=r"frame 00001: prediction is \(12, 16\).*\(6, 8\)"):
        davis.evaluate(root, results)


def test_prediction_with_an_unknown_id(tiny):
    root, results, gt = tiny
    pred = gt.copy()
    pred[3, 0, 0] = 3
    write_results(results, "seq", pred)
    with pytest.raises(InputError, match="frame 00003: predicted id 3 .* 2 objects.*"
                                             "official toolkit stops without scores"):
        davis.evaluate(root, results)


def test_colour_prediction(tiny):
    import cv2

    root, results, gt = tiny
    write_results(results, "seq", gt)
    cv2.imwrite(str(results / "seq" / "00001.png"), np.zeros((6, 8, 3), np.uint8))
    with pytest.raises(InputError, match=r"frame 00001.*colour image \(RGB\), not an index mask"):
        davis.evaluate(root, results)


def test_sequence_with_two_frames(tiny):
    root, results, gt = tiny
    for t in (2, 3, 4):
        (root / f"JPEGImages/480p/seq/{t:05d}.jpg").unlink()
        (root / f"Annotations/480p/seq/{t:05d}.png").unlink()
    write_results(results, "seq", gt)
    with pytest.raises(InputError, match="sequence 'seq' has 2 annotated frames"):
        davis.evaluate(root, results)
