"""simvos-export: options, recipes, bad input (one-line errors, non-zero exit, nothing written)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from simvos_trt.cli.export import main  # noqa: E402

SMALL = ["--backbone", "tiny", "--layer-index", "1", "--no-token-refinement", "--height", "32", "--width", "48",
         "--max-objects", "2"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def small_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "small"
    assert main([*SMALL, "--out", str(out)]) == 0
    return out


def test_export_prints_stages_and_writes_a_checked_folder(small_export, capsys):
    manifest = json.loads((small_export / "manifest.json").read_text())
    assert manifest["checkpoint"]["kind"] == "random" and manifest["variant"] is None
    assert manifest["config"]["layer_index"] == 1 and manifest["objects_profile"] == {"min": 1, "opt": 2, "max": 2}
    code, out, err = run(capsys, "--check", str(small_export))
    assert code == 0, err
    assert "sha256s match" in out and "decoder_2mem" in out and "FAIL" not in out
    assert "static-shapes" in out and "fp16-range" in out


def test_random_weights_warn_loudly(tmp_path, capsys):
    code, out, err = run(capsys, *SMALL, "--out", str(tmp_path / "x"))
    assert code == 0
    assert "RANDOM weights" in err and "benchmarking only" in err
    assert "[2/3] exporting graphs" in out and "query_encoder" in out and "MB" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--height", "100"], "--height: 100 is not a positive multiple of 16"),
        (["--layer-index", "13"], "layer_index: got 13, expected 0..12"),
        (["--layer-index", "0", "--token-refinement"], "token_refinement: needs layer_index >= 1"),
        (["--max-objects", "0"], "--max-objects"),
        (["--opset", "16"], "--opset: 16 is outside 17..20"),
        (["--opset", "99"], "--opset: 99 is outside 17..20"),
    ],
)
def test_bad_settings(argv, message, tmp_path, capsys):
    code, _, err = run(capsys, *SMALL, *argv, "--out", str(tmp_path / "o"))
    assert code == 2
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_unknown_variant_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--variant", "XL"])
    assert exc.value.code == 2
    assert "invalid choice: 'XL'" in capsys.readouterr().err


def test_checkpoint_of_another_variant(tiny_checkpoint, tmp_path, capsys):
    code, _, err = run(capsys, "--variant", "B", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "o"))
    assert code == 2
    assert "holds a tiny ViT (C=192, 12 blocks)" in err
    assert not (tmp_path / "o").exists()


def test_existing_folder_needs_force(tmp_path, capsys):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "mine.txt").write_text("keep")
    code, _, err = run(capsys, *SMALL, "--out", str(tmp_path / "o"))
    assert code == 2 and "--force" in err
    assert (tmp_path / "o" / "mine.txt").read_text() == "keep"


def test_recipe_and_overrides(tmp_path, capsys):
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"variant": "T", "height": 32, "width": 48, "max_objects": 3}))
    code, _, err = run(capsys, "--recipe", str(recipe), "--layer-index", "2", "--out", str(tmp_path / "o"))
    assert code == 0, err
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert (m["config"]["backbone"], m["config"]["layer_index"], m["config"]["kf"]) == ("tiny", 2, 16)
    assert (m["height"], m["width"], m["objects_profile"]["max"]) == (32, 48, 3)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"variant": "T", "colour": "red"}))
    code, _, err = run(capsys, "--recipe", str(bad))
    assert code == 2 and "unknown keys ['colour']" in err


def test_shipped_recipes_are_valid():
    from pathlib import Path

    from simvos_trt.cli.export import DEFAULTS, make_config, read_recipe

    recipes = sorted((Path(__file__).parents[2] / "export").glob("*.json"))
    assert {r.stem for r in recipes} >= {"t", "b", "l", "bs"}
    for r in recipes:
        make_config({**DEFAULTS, **read_recipe(r)})


def test_check_detects_tampering_and_missing_files(small_export, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(small_export, copy)
    with open(copy / "aggregate.onnx", "ab") as f:
        f.write(b"\0")
    code, _, err = run(capsys, "--check", str(copy))
    assert code == 2 and "aggregate.onnx does not match the sha256" in err
    (copy / "aggregate.onnx").unlink()
    code, _, err = run(capsys, "--check", str(copy))
    assert code == 2 and "missing" in err
    (copy / "manifest.json").unlink()
    code, _, err = run(capsys, "--check", str(copy))
    assert code == 2 and "not a complete export" in err


def test_check_names_each_violation(small_export, tmp_path, capsys):
    """A graph that breaks a rule (a -inf constant) makes --check exit 1 naming the node."""
    import shutil

    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    from simvos_trt.manifest import sha256_file

    copy = tmp_path / "copy"
    shutil.copytree(small_export, copy)
    path = copy / "aggregate.onnx"
    model = onnx.load(str(path))
    out = model.graph.output[0].name
    model.graph.node.append(helper.make_node("Constant", [], ["neg_inf"], name="bad_fill",
                                             value=numpy_helper.from_array(np.array([-np.inf], np.float32))))
    model.graph.node.append(helper.make_node("Add", [out + "_pre", "neg_inf"], [out], name="bad_add"))
    for node in model.graph.node[:-2]:
        node.output[:] = [out + "_pre" if o == out else o for o in node.output]
    onnx.save(model, str(path))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["graphs"]["aggregate"]["sha256"] = sha256_file(path)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    code, out_text, err = run(capsys, "--check", str(copy))
    assert code == 1
    assert "FAIL" in out_text and "fp16-range" in err and "bad_fill" in err


def test_without_a_tensorrt_library_the_export_is_fp32_and_stops_after_onnx(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("simvos_trt.trt.library._import", lambda name: None)  # neither library installed
    monkeypatch.setattr("simvos_trt.trt.library._selected", None)
    code, out, _ = run(capsys, *SMALL, "--out", str(tmp_path / "a"))
    assert code == 0
    assert "fp32 graphs" in out and f"run: simvos-build {tmp_path / 'a'}" in out
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["precision"] == "fp32"
    code, _, err = run(capsys, *SMALL, "--out", str(tmp_path / "b"), "--require-engine")
    assert code == 3
    assert "--require-engine" in err and f"simvos-build {tmp_path / 'b'}" in err
    assert (tmp_path / "b" / "manifest.json").exists()  # the checked ONNX export is kept


def test_with_tensorrt_rtx_the_default_export_is_fp16_with_engines(tmp_path, capsys):
    pytest.importorskip("tensorrt_rtx", reason="needs TensorRT-RTX (pip install 'simvos-trt[rtx]')")
    code, out, err = run(capsys, *SMALL, "--out", str(tmp_path / "a"))
    assert code == 0, err
    assert "fp16 graphs" in out and "5 built" in out
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["precision"] == "fp16" and manifest["graphs"]["aggregate"]["precision"] == "fp32"
    assert all(g["engine"]["target"]["library"] == "tensorrt_rtx" for g in manifest["graphs"].values())
    code, out, _ = run(capsys, *SMALL, "--out", str(tmp_path / "b"), "--precision", "fp32", "--no-engines")
    assert code == 0 and "--no-engines" in out
    graphs = json.loads((tmp_path / "b" / "manifest.json").read_text())["graphs"]
    assert all(g["engine"] is None for g in graphs.values())


def test_force_never_deletes_a_folder_of_user_files(tmp_path, capsys):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "mine.txt").write_text("keep")
    code, _, err = run(capsys, *SMALL, "--out", str(tmp_path / "o"), "--force")
    assert code == 2 and "did not write; it is left alone (even with --force)" in err and err.count("\n") == 1
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["mine.txt"]


def test_checkpoint_inside_out_is_never_deleted(tiny_checkpoint, tmp_path, capsys):
    import shutil

    out = tmp_path / "o"
    out.mkdir()
    ckpt = shutil.copy(tiny_checkpoint, out / "t.pth")
    code, _, err = run(capsys, "--variant", "T", "--height", "32", "--width", "48", "--checkpoint", str(ckpt),
                       "--out", str(out), "--force")
    assert code == 2 and f"--out {out} holds the input {ckpt}" in err and err.count("\n") == 1
    assert [p.name for p in out.iterdir()] == ["t.pth"]


def test_out_that_cannot_be_written(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("x")
    code, _, err = run(capsys, *SMALL, "--out", ".", "--force")
    assert code == 2 and "is or holds the current folder" in err and err.count("\n") == 1
    code, _, err = run(capsys, *SMALL, "--out", "keep.txt/o")
    assert code == 2 and "cannot write there" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize("recipe, message", [
    ({"height": "64"}, "height: got '64' (str), expected an integer"),
    ({"height": 64.0}, "height: got 64.0 (float), expected an integer"),
    ({"uint8_input": 1}, "uint8_input: got 1 (int), expected true or false"),
    ({"variant": "X"}, "variant 'X' is not one of B, BS, L, T"),
    ({"checkpoint": 5}, "checkpoint: got 5 (int), expected a string or null"),
    ([{"variant": "T"}], "holds a JSON list, expected an object"),
    (None, "r.json is not a file; give a JSON file"),
])
def test_recipe_values_of_the_wrong_type(recipe, message, tmp_path, capsys):
    path = tmp_path / "r.json"
    if recipe is None:
        path.mkdir()
    else:
        path.write_text(json.dumps(recipe))
    code, _, err = run(capsys, "--recipe", str(path), "--out", str(tmp_path / "o"))
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_large_frames_need_allow_large(tmp_path, capsys):
    code, _, err = run(capsys, "--variant", "T", "--height", "4096", "--width", "4096", "--out", str(tmp_path / "o"))
    assert code == 2 and err.count("\n") == 1
    assert "65536 tokens per frame (above 4096" in err and "GiB" in err and "pass --allow-large" in err
    assert not any(tmp_path.iterdir())


def test_check_compares_the_manifest_with_the_graphs(small_export, tmp_path, capsys):
    import shutil

    code, _, err = run(capsys, "--check", str(small_export / "manifest.json"))
    assert code == 2 and "is a file, not an export folder" in err
    for edit, message in (({"height": 64}, "query_encoder's frame is recorded as (1, 32, 48, 3), but the 64x48"),
                          ({"config": {"layer_index": 2}}, "disagrees with the graphs (query_encoder.onnx was "
                                                           "exported with other config")):
        folder = shutil.copytree(small_export, tmp_path / f"e{len(list(tmp_path.iterdir()))}")
        data = json.loads((folder / "manifest.json").read_text())
        for key, value in edit.items():
            data[key] = {**data[key], **value} if isinstance(value, dict) else value
        (folder / "manifest.json").write_text(json.dumps(data))
        code, out, err = run(capsys, "--check", str(folder))
        assert code == 2 and message in err and err.count("\n") == 1, err
        assert "sha256s match" not in out


def test_sigterm_during_an_export_leaves_nothing(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "o"
    proc = subprocess.Popen([sys.executable, "-m", "simvos_trt.cli.export", *SMALL, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".o.partial-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted; nothing was written" in err
    assert list(tmp_path.iterdir()) == []
