"""simvos-bench end to end (tiny ViT at 32x48, ONNX Runtime) and its option errors."""

from __future__ import annotations

import json

import pytest

from simvos_trt.bench.runner import SweepSettings, unavailable_reason
from simvos_trt.cli.bench import main

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

TINY = ["--backbone", "tiny", "--size", "32x48", "--frames", "2", "--warmup", "1", "--no-peak"]


@pytest.mark.parametrize("argv, message", [
    (["--table", "4"], "invalid choice: 4"),
    (["--backend", "onnxruntime,tpu"], "unknown backend 'tpu'"),
    (["--size", "128by224"], "is not HxW"),
    (["--frames", "0"], "is not >= 1"),
    (["--layers", ""], "'' is not a comma list of integers"),
    (["--layers", ",,"], "',,' is not a comma list of integers"),
])
def test_bad_options_are_argparse_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_size_not_a_multiple_of_16_is_a_one_line_error(capsys, tmp_path):
    assert main(["--size", "100x224", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("simvos-bench: error: --size 100x224")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("option", ["--results", "--engines"])
def test_unwritable_folders_are_a_one_line_error(option, capsys, tmp_path):
    (tmp_path / "file").write_text("x")
    argv = ["--results", str(tmp_path / "r"), "--engines", str(tmp_path / "e"), "--no-peak"]
    argv[argv.index(option) + 1] = str(tmp_path / "file" / "sub")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"simvos-bench: error: {option} ") and "cannot write there" in err


def test_paper_mode_without_a_gpu_says_so(capsys, tmp_path):
    if unavailable_reason("tensorrt", SweepSettings()) is None:
        pytest.skip("TensorRT and a GPU are here: --paper would run the paper's setting")
    assert main(["--paper", "--results", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert "tensorrt is not available here" in err and "none of the backends can run here" in err
    assert not any(tmp_path.iterdir())


def test_end_to_end(tmp_path, capsys):
    results, engines = tmp_path / "results", tmp_path / "engines"
    backends = ["--backend", "onnxruntime"]
    trt_missing = unavailable_reason("tensorrt", SweepSettings()) is not None
    if trt_missing:
        backends += ["--backend", "tensorrt"]
    argv = [*TINY, "--layers", "0,2", "--refinement", "off", *backends, "--engines", str(engines),
            "--results", str(results)]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    if trt_missing:
        assert "simvos-bench: tensorrt is not available here, its rows are skipped" in err
    (folder,) = results.iterdir()  # one folder: the unavailable backend gets none
    assert folder.name.endswith("-onnxruntime")
    assert {p.name for p in folder.iterdir()} == {"results.json", "results.csv", "report.txt", "fps_vs_L.png"}
    doc = json.loads((folder / "results.json").read_text())
    assert doc["host"]["cpu"] and doc["host"]["versions"]["onnxruntime"] and doc["settings"]["height"] == 32
    assert [(r["config"], r["status"]) for r in doc["rows"]] == [("tiny-L0", "ok"), ("tiny-L2", "ok")]
    assert all(r["fps"] > 0 and len(r["step_ms"]) == 2 and r["joint_ms"] > 0 for r in doc["rows"])
    assert doc["rows"][0]["speedup"] == 1.0 and doc["rows"][1]["paper_fps"] == 5.7
    assert "exporting graphs" in out and "joint_decoder_2mem" in out and "SimVOS-B (L=0) [tiny-L0]" in out

    # Again: the graphs are reused, a second folder is written; then compare the two.
    manifests = sorted(engines.glob("bench/*/manifest.json"))
    stamps = [m.stat().st_mtime_ns for m in manifests]
    assert len(manifests) == 2
    assert main([*argv[:-4], "--backend", "onnxruntime", "--engines", str(engines), "--results",
                 str(results), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [m.stat().st_mtime_ns for m in manifests] == stamps
    second = out["onnxruntime"]["folder"]
    assert second.endswith("-onnxruntime-2") and len(out["onnxruntime"]["rows"]) == 2
    assert main(["--compare", str(folder), second]) == 0
    text = capsys.readouterr().out
    assert "FPS A" in text and "L=2 [tiny-L2]" in text
