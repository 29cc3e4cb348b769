"""simvos-eval without a model: scoring PNG folders, comparing runs, resuming, and the error messages.

Segmentation runs through a stand-in segmenter (``VideoSegmenter.open`` patched) that
predicts the first mask in every frame, so these tests need neither torch nor an export;
``test_end_to_end.py`` runs the real graphs.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from fake_segmenter import FakeSegmenter, patch_open
from PIL import Image
from synthetic_davis import make_dataset

from simvos_trt.cli.eval import main
from simvos_trt.eval.metrics import boundary_f_measure, global_scores, region_similarity, statistics
from simvos_trt.eval.run import segment_dataset
from simvos_trt.runtime.png import write_index_png

SEQS = ("synthetic-000", "synthetic-001")
T, H, W = 6, 48, 64


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    make_dataset(tmp_path / "davis", sequences=2, frames=T, height=H, width=W, objects=3, seed=0)
    return tmp_path / "davis"


def annotations(root: Path, seq: str) -> np.ndarray:
    """(T, H, W) uint8 ground truth, read with Pillow."""
    files = sorted((root / "Annotations" / "480p" / seq).glob("*.png"))
    return np.stack([np.array(Image.open(f)) for f in files])


def write_predictions(results: Path, preds: dict[str, np.ndarray]) -> None:
    for seq, labels in preds.items():
        (results / seq).mkdir(parents=True, exist_ok=True)
        for t, lab in enumerate(labels):
            write_index_png(results / seq / f"{t:05d}.png", lab)


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))


def expected(root: Path, preds: dict[str, np.ndarray]) -> tuple[list[float], dict[str, float]]:
    """The global row and each object's J&F, from the metrics functions (not davis.py)."""
    j_stats, f_stats, jf = [], [], {}
    for seq in SEQS:
        gt, pred = annotations(root, seq), preds[seq]
        for k in range(1, int(gt[0].max()) + 1):
            scored = range(1, len(gt) - 1)
            j = statistics(np.array([region_similarity(gt[t] == k, pred[t] == k) for t in scored]))
            f = statistics(np.array([boundary_f_measure(gt[t] == k, pred[t] == k) for t in scored]))
            j_stats.append(j)
            f_stats.append(f)
            jf[f"{seq}_{k}"] = (j.mean + f.mean) / 2
    return list(global_scores(j_stats, f_stats).row()), jf


def score(root: Path, results: Path, capsys, *extra: str) -> dict:
    assert main(["--davis-root", str(root), "--results", str(results), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def damaged(root: Path) -> dict[str, np.ndarray]:
    """Ground truth with object 1 erased in frame 2 and a stray object-2 box in frame 3 of synthetic-000."""
    preds = {seq: annotations(root, seq).copy() for seq in SEQS}
    p = preds["synthetic-000"]
    p[2][p[2] == 1] = 0
    p[3][30:40, 5:15] = 2
    return preds


# ---------------------------------------------------------------- scoring a folder of PNGs


def test_ground_truth_as_predictions_scores_one(root, tmp_path, capsys):
    results = tmp_path / "gt"
    write_predictions(results, {seq: annotations(root, seq) for seq in SEQS})
    assert main(["--davis-root", str(root), "--results", str(results), "--per-sequence"]) == 0
    out = capsys.readouterr().out
    assert "J&F-Mean" in out and "synthetic-001_3" in out
    g = read_csv(results / "global_results-val.csv")
    assert g == [["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"],
                 ["1.000", "1.000", "1.000", "0.000", "1.000", "1.000", "0.000"]]
    rows = read_csv(results / "per-sequence_results-val.csv")
    assert rows[0] == ["Sequence", "J-Mean", "F-Mean"]
    assert rows[1:] == [[f"{s}_{k}", "1.000", "1.000"] for s in SEQS for k in (1, 2, 3)]


def test_damaged_prediction_drops_by_the_expected_amount(root, tmp_path, capsys):
    preds = damaged(root)
    results, out = tmp_path / "damaged", tmp_path / "csvs"
    write_predictions(results, preds)
    s = score(root, results, capsys, "--out", str(out))
    want_row, want_jf = expected(root, preds)
    assert list(s["global"].values()) == pytest.approx(want_row, abs=1e-12)
    assert s["global"]["J&F-Mean"] < 0.99
    got_jf = {o["object"]: (o["J-Mean"] + o["F-Mean"]) / 2 for o in s["per_sequence"]}
    assert got_jf == pytest.approx(want_jf, abs=1e-12)
    assert want_jf["synthetic-000_1"] < 1 and want_jf["synthetic-000_2"] < 1 and want_jf["synthetic-001_1"] == 1
    assert read_csv(out / "global_results-val.csv")[1] == [f"{x:.3f}" for x in want_row]
    assert not list(results.glob("*.csv")), "--out takes the CSVs"


def test_compare_two_runs(root, tmp_path, capsys):
    good, bad = tmp_path / "good", tmp_path / "bad"
    write_predictions(good, {seq: annotations(root, seq) for seq in SEQS})
    preds = damaged(root)
    write_predictions(bad, preds)
    score(root, good, capsys)
    score(root, bad, capsys)
    assert main(["--compare", str(good), str(bad), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    _, want_jf = expected(root, preds)
    rows = read_csv(bad / "per-sequence_results-val.csv")[1:]
    from_csv = {name: (float(j) + float(f)) / 2 for name, j, f in rows}  # the 3-decimal CSV values
    assert [o["object"] for o in r["objects"]] == [f"{s}_{k}" for s in SEQS for k in (1, 2, 3)]
    for o in r["objects"]:
        assert o["J&F A"] == 1.0 and o["delta"] == pytest.approx(from_csv[o["object"]] - 1.0, abs=1e-12)
        assert o["delta"] == pytest.approx(want_jf[o["object"]] - 1.0, abs=1e-3)
    g = float(read_csv(bad / "global_results-val.csv")[1][0])
    assert r["global"]["J&F-Mean"] == pytest.approx({"A": 1.0, "B": g, "delta": g - 1.0})
    assert r["max_abs_delta"]["object"] in ("synthetic-000_1", "synthetic-000_2")
    assert main(["--compare", str(good), str(bad)]) == 0
    table = capsys.readouterr().out
    assert "B - A" in table and f"{g - 1.0:+.3f}" in table and "synthetic-000_1" in table


# ---------------------------------------------------------------- segmenting, resuming


class FakeSession:
    """Predicts the first mask in every frame; counts the frames it sees."""

    def __init__(self, log: list[int], fail_after: int | None) -> None:
        self.log, self.fail_after, self.mask = log, fail_after, None

    def start(self, frame: np.ndarray, mask: np.ndarray, *, bgr: bool = False) -> np.ndarray:
        assert bgr and frame.shape == (*mask.shape, 3)
        self.mask = mask.copy()
        self.log.append(0)
        return mask.copy()

    def step(self, frame: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        assert mask is None  # DAVIS states objects on the first frame only
        if self.fail_after is not None and len(self.log) >= self.fail_after:
            raise KeyboardInterrupt
        self.log.append(len(self.log))
        return self.mask.copy()


@pytest.fixture()
def fake(monkeypatch):
    """Patch VideoSegmenter.open; returns the list of segmenters opened and their failure switch."""
    return patch_open(monkeypatch, FakeSession)


def run_engine(root: Path, out: Path | None, *extra: str) -> int:
    return main(["--davis-root", str(root), "--engine-dir", "engines/fake-64", "--json",
                 *(["--out", str(out)] if out else []), *extra])


def pngs(out: Path) -> dict[str, int]:
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in sorted(out.glob("*/*.png"))}


def test_engine_dir_segments_then_scores_and_resumes(root, tmp_path, fake, capsys, monkeypatch):
    opened, _ = fake
    monkeypatch.chdir(tmp_path)
    assert run_engine(root, None) == 0
    std = capsys.readouterr()
    out = Path("results/fake-64-fake")  # default: results/<engine-dir name>-<backend>
    s = json.loads(std.out)
    assert s["backend"] == "fake" and s["results"] == str(out)
    assert [q["skipped"] for q in s["sequences"]] == [False, False]
    assert "[1/2] synthetic-000: 6 frames" in std.err and "frames/s" in std.err
    assert sorted(pngs(out)) == [f"{seq}/{t:05d}.png" for seq in SEQS for t in range(T)]
    assert (out / "global_results-val.csv").is_file() and (out / "per-sequence_results-val.csv").is_file()
    first = annotations(root, "synthetic-000")[0]
    np.testing.assert_array_equal(np.array(Image.open(out / "synthetic-000/00004.png")), first)
    assert len(opened[0].frames) == 2 * T

    before = pngs(out)
    assert run_engine(root, None) == 0
    std = capsys.readouterr()
    assert "[2/2] synthetic-001: skipped, all 6 PNGs present" in std.err
    assert opened[1].frames == [] and pngs(out) == before
    assert json.loads(std.out)["global"] == s["global"], "skipped sequences are still scored"

    assert run_engine(root, None, "--force", "--no-progress") == 0
    assert capsys.readouterr().err == ""
    assert len(opened[2].frames) == 2 * T and sorted(pngs(out)) == sorted(before)


def test_an_incomplete_sequence_is_redone(root, tmp_path, fake, capsys):
    opened, _ = fake
    out = tmp_path / "out"
    assert run_engine(root, out) == 0
    (out / "synthetic-001" / "00004.png").unlink()  # as if stopped before frame 4
    (out / "synthetic-001" / ".00004.png.abc.tmp").write_bytes(b"half a png")
    keep = pngs(out)
    assert run_engine(root, out) == 0
    err = capsys.readouterr().err
    assert "synthetic-000: skipped" in err and "[2/2] synthetic-001: 6 frames" in err
    assert len(opened[1].frames) == T
    now = pngs(out)
    assert all(now[k] == v for k, v in keep.items() if k.startswith("synthetic-000"))
    assert "synthetic-001/00004.png" in now and not list(out.glob("*/.*.tmp"))


def test_interrupted_run_leaves_complete_pngs_and_resumes(root, tmp_path, fake, capsys):
    opened, fail = fake
    out = tmp_path / "out"
    fail["after"] = T + 3  # the second sequence stops at its frame 3
    assert run_engine(root, out) == 130
    assert "interrupted" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "synthetic-001").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    for p in (out / "synthetic-001").iterdir():
        assert np.array(Image.open(p)).shape == (H, W)
    fail["after"] = None
    assert run_engine(root, out) == 0
    err = capsys.readouterr().err
    assert "synthetic-000: skipped" in err and "synthetic-001: 6 frames" in err
    assert len(pngs(out)) == 2 * T


def test_segment_dataset_library_call(root, tmp_path):
    seg = FakeSegmenter(FakeSession)
    seen = []
    runs = segment_dataset(seg, root, "val", tmp_path / "out", progress=lambda i, n, r: seen.append((i, n, r.name)))
    assert [(r.name, r.frames, r.skipped) for r in runs] == [(s, T, False) for s in SEQS]
    assert seen == [(1, 2, SEQS[0]), (2, 2, SEQS[1])] and all(r.fps > 0 for r in runs)
    again = segment_dataset(seg, root, "val", tmp_path / "out")
    assert all(r.skipped and r.fps is None for r in again)


# ---------------------------------------------------------------- bad input: one line, exit 2


def gt_results(root: Path, tmp_path: Path) -> Path:
    results = tmp_path / "results"
    write_predictions(results, {seq: annotations(root, seq) for seq in SEQS})
    return results


def no_jpegs(root: Path, results: Path) -> None:
    shutil.rmtree(root / "JPEGImages" / "480p")


def no_split(root: Path, results: Path) -> None:
    (root / "ImageSets" / "2017" / "val.txt").unlink()


def no_first_annotation(root: Path, results: Path) -> None:
    (root / "Annotations" / "480p" / "synthetic-001" / "00000.png").unlink()


def mixed_sizes(root: Path, results: Path) -> None:
    path = root / "JPEGImages" / "480p" / "synthetic-000" / "00003.jpg"
    cv2.imwrite(str(path), np.zeros((H - 8, W, 3), np.uint8))


def wrong_size_prediction(root: Path, results: Path) -> None:
    write_index_png(results / "synthetic-001" / "00002.png", np.zeros((H, W + 2), np.uint8))


def id_above_objects(root: Path, results: Path) -> None:
    labels = annotations(root, "synthetic-000")[1]
    labels[0, 0] = 4
    write_index_png(results / "synthetic-000" / "00001.png", labels)


def missing_prediction(root: Path, results: Path) -> None:
    (results / "synthetic-000" / "00003.png").unlink()


def no_results(root: Path, results: Path) -> None:
    shutil.rmtree(results)


BAD = {
    no_jpegs: "JPEGImages/480p is missing",
    no_split: "ImageSets/2017/val.txt is missing",
    no_first_annotation: "sequence 'synthetic-001': frame 00000 has no first annotation",
    mixed_sizes: "sequence 'synthetic-000': 00003.jpg is (40, 64) (H, W) but 00000.png is (48, 64)",
    wrong_size_prediction: "sequence 'synthetic-001', frame 00002: prediction is (48, 66) (H, W) but the "
                           "annotation is (48, 64)",
    id_above_objects: "sequence 'synthetic-000', frame 00001: predicted id 4 but the first annotation has 3 "
                      "objects",
    missing_prediction: "sequence 'synthetic-000': 1 predicted PNGs missing",
    no_results: "does not exist; pass the folder that holds one sub-folder of PNGs per sequence",
}


def one_line_error(capsys) -> str:
    """The error line: stderr's last, after progress lines only; nothing on stdout."""
    std = capsys.readouterr()
    assert std.out == ""
    *progress, last = std.err.splitlines()
    assert last.startswith("simvos-eval: error: "), std.err
    assert not [line for line in progress if "error" in line or not line.startswith("simvos-eval: ")], std.err
    return last


@pytest.mark.parametrize("damage", list(BAD), ids=lambda f: f.__name__)
def test_bad_input_with_results(root, tmp_path, capsys, damage):
    results = gt_results(root, tmp_path)
    damage(root, results)
    assert main(["--davis-root", str(root), "--results", str(results)]) == 2
    message = one_line_error(capsys)
    assert BAD[damage] in message
    if damage is id_above_objects:
        assert "the official toolkit stops without scores" in message


@pytest.mark.parametrize("damage", [no_jpegs, no_first_annotation, mixed_sizes], ids=lambda f: f.__name__)
def test_bad_dataset_fails_before_segmenting(root, tmp_path, fake, capsys, damage):
    opened, _ = fake
    damage(root, tmp_path)
    assert run_engine(root, tmp_path / "out", "--no-progress") == 2
    assert BAD[damage] in one_line_error(capsys)
    assert all(seg.frames == [] for seg in opened) and not list(tmp_path.glob("out/*/*.png"))


def test_compare_errors(root, tmp_path, capsys):
    a = gt_results(root, tmp_path)
    assert main(["--compare", str(a), str(tmp_path)]) == 2
    assert "global_results-val.csv not found; score the run first" in one_line_error(capsys)
    score(root, a, capsys)
    b = tmp_path / "b"
    b.mkdir()
    for name in ("global_results-val.csv", "per-sequence_results-val.csv"):
        lines = (a / name).read_text().splitlines(keepends=True)
        (b / name).write_text("".join(lines[:-1]) if name.startswith("per") else "".join(lines))
    assert main(["--compare", str(a), str(b)]) == 2
    assert "scored different objects (only in A: ['synthetic-001_3']" in one_line_error(capsys)


def test_option_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--results", str(tmp_path)])
    assert exc.value.code == 2 and "--davis-root or --youtube-root is required" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--davis-root", str(tmp_path), "--results", str(tmp_path), "--engine-dir", str(tmp_path)])
    assert exc.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--davis-root", str(tmp_path), "--youtube-root", str(tmp_path), "--results", str(tmp_path)])
    assert exc.value.code == 2 and "--youtube-root: not allowed with argument --davis-root" in capsys.readouterr().err


def test_missing_export_folder(root, tmp_path, capsys):
    assert main(["--davis-root", str(root), "--engine-dir", str(tmp_path / "nothing"), "--no-progress"]) == 2
    assert "nothing" in one_line_error(capsys)


# ---------------------------------------------------------------- where results may be written


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("force", [False, True])
def test_the_dataset_is_never_an_output(root, tmp_path, fake, capsys, force):
    before = tree(root)
    for out in (root / "Annotations" / "480p", root / "Annotations", root):
        assert run_engine(root, out, "--no-progress", *(["--force"] if force else [])) == 2
        assert "writing there could destroy it" in one_line_error(capsys)
    gt = gt_results(root, tmp_path)
    assert main(["--davis-root", str(root), "--results", str(gt), "--out", str(root / "ImageSets")]) == 2
    assert "lies inside the input" in one_line_error(capsys)
    assert tree(root) == before


def test_results_of_another_export(root, tmp_path, fake, capsys, monkeypatch):
    opened, _ = fake
    out = tmp_path / "out"
    assert run_engine(root, out, "--no-progress") == 0
    (out / "synthetic-999").mkdir()
    write_index_png(out / "synthetic-999" / "00000.png", np.zeros((H, W), np.uint8))
    capsys.readouterr()
    monkeypatch.setattr(FakeSegmenter, "manifest", SimpleNamespace(fingerprint="ffffffffffff"))
    assert run_engine(root, out, "--no-progress") == 2
    assert "already holds the output of export 0123456789ab on fake; pass --force" in one_line_error(capsys)
    assert opened[1].frames == []
    assert run_engine(root, out, "--no-progress", "--force") == 0
    assert len(opened[2].frames) == 2 * T and not (out / "synthetic-999" / "00000.png").exists()
    capsys.readouterr()
    assert run_engine(root, out, "--no-progress") == 0  # the same export: resumes, all skipped
    assert opened[3].frames == []


def test_a_folder_of_other_files(root, tmp_path, fake, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.txt").write_text("do not touch")
    assert run_engine(root, out, "--force", "--no-progress") == 2
    assert "did not write; it is left alone" in one_line_error(capsys)
    assert tree(out) == {"thesis.txt": b"do not touch"}


def test_empty_split_list(root, tmp_path, fake, capsys):
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n  \n")
    assert run_engine(root, tmp_path / "out", "--no-progress") == 2
    assert "names no sequence" in one_line_error(capsys)
    assert main(["--davis-root", str(root), "--results", str(tmp_path), "--no-progress"]) == 2
    assert "names no sequence" in one_line_error(capsys)


def test_truncated_jpeg_in_the_dataset(root, tmp_path, fake, capsys):
    jpg = root / "JPEGImages" / "480p" / SEQS[1] / "00003.jpg"
    jpg.write_bytes(jpg.read_bytes()[:-300])
    assert run_engine(root, tmp_path / "out", "--no-progress") == 2
    assert f"sequence '{SEQS[1]}', frame 00003: frame {jpg} is damaged" in one_line_error(capsys)


def test_a_file_where_a_folder_is_expected(root, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["--davis-root", str(root), "--results", str(tmp_path / "f"), "--no-progress"]) == 2
    assert f"results folder {tmp_path / 'f'} is not a folder" in one_line_error(capsys)
    assert main(["--davis-root", str(tmp_path / "f"), "--results", str(tmp_path), "--no-progress"]) == 2
    assert f"DAVIS root {tmp_path / 'f'} is a file" in one_line_error(capsys)


def test_the_export_folder_is_never_an_output(root, tmp_path, fake, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_engine(root, Path("engines/fake-64/results"), "--no-progress") == 2
    assert "lies inside the input engines/fake-64" in one_line_error(capsys)
    assert not (tmp_path / "engines").exists()
