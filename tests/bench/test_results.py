"""Report math on made-up measurements, result files (CSV/JSON round trips), comparisons, GPU peaks."""

from __future__ import annotations

import csv
import dataclasses
import io
import json

import pytest

from simvos_trt.bench.hardware import find_gpu_peak, gemm_peak, load_gpu_peaks
from simvos_trt.bench.results import (
    CSV_FILE,
    JSON_FILE,
    SCALARS,
    ResultFolder,
    RowResult,
    compare,
    compare_folders,
    derive,
    format_report,
    read_results,
    to_csv,
)
from simvos_trt.errors import InputError
from simvos_trt.manifest import Precision


def row(label: str, layer: int, fps: float | None, gflop: float, *, tr: bool = False, backend: str = "onnxruntime",
        paper_fps: float | None = None, joint_ms: float | None = None, joint_gflop: float | None = None,
        device: str = "cpu", status: str = "ok") -> RowResult:
    return RowResult(label=label, tables="2", config=f"tiny-L{layer}{'-tr9x9' if tr else ''}", backbone="tiny",
                     layer_index=layer, token_refinement=tr, kf=9 if tr else None, kb=9 if tr else None,
                     backend=backend, precision="fp32", device=device, height=128, width=224, objects=2, frames=4,
                     warmup=1, status=status, gflop=gflop, joint_gflop=joint_gflop, paper_fps=paper_fps,
                     paper_label=label if paper_fps else None, fps=fps,
                     median_ms=None if fps is None else 1000 / fps, joint_ms=joint_ms,
                     step_ms=[] if fps is None else [1000 / fps] * 4)


ROWS = [row("SimVOS-B (L=0)", 0, 2.0, 40.0, paper_fps=4.9, joint_ms=400.0, joint_gflop=38.0),
        row("L=4", 4, 3.0, 20.0, paper_fps=6.5, joint_ms=250.0, joint_gflop=18.0),
        row("L=4 + TR 128/128", 4, None, 10.0, tr=True, paper_fps=13.5, status="failed")]


def test_derived_figures():
    b, l4, tr = derive(ROWS, cpu_peak_gflops=200.0)
    assert (b.speedup, b.paper_speedup, b.flop_ratio) == (1.0, 1.0, 1.0)
    assert l4.speedup == pytest.approx(1.5)
    assert l4.paper_speedup == pytest.approx(6.5 / 4.9)
    assert l4.flop_ratio == pytest.approx(2.0)  # B's 40 GFLOP over 20
    assert l4.achieved_gflops == pytest.approx(60.0)  # 20 GFLOP x 3 FPS
    assert l4.joint_gflops == pytest.approx(72.0)  # 18 GFLOP in 0.25 s
    assert l4.roofline_fps == pytest.approx(10.0) and l4.roofline_share == pytest.approx(0.3)
    assert l4.roofline_source == "measured CPU float32 GEMM peak"
    assert tr.speedup is None and tr.achieved_gflops is None  # not measured
    assert tr.flop_ratio == pytest.approx(4.0) and tr.paper_speedup == pytest.approx(13.5 / 4.9)
    assert ROWS[1].speedup is None  # derive does not modify its input


def test_speedups_are_per_backend_and_gpu_roofline():
    rows = ROWS[:2] + [row("SimVOS-B (L=0)", 0, 10.0, 40.0, backend="tensorrt", device="cuda"),
                       row("L=4", 4, 12.5, 20.0, backend="tensorrt", device="cuda")]
    a100 = find_gpu_peak("NVIDIA A100-SXM4-80GB")
    out = derive(rows, cpu_peak_gflops=None, gpu_peak=a100)
    assert out[1].speedup == pytest.approx(1.5) and out[3].speedup == pytest.approx(1.25)
    assert out[1].roofline_fps is None  # CPU row without a CPU peak
    assert out[3].roofline_fps == pytest.approx(19.5e3 / 20.0)  # fp32 rows use the FP32 peak
    assert out[3].roofline_share == pytest.approx(12.5 / 975.0)


def test_gpu_peaks():
    names = {p.name for p in load_gpu_peaks()}
    for gpu in ("A100", "H100", "L4", "T4", "RTX 3090", "RTX 4090", "A10"):
        assert any(gpu in n for n in names)
    assert all(p.source and p.fp16_tensor > p.fp32 > 0 for p in load_gpu_peaks())
    assert find_gpu_peak("NVIDIA A100 80GB PCIe").name == "NVIDIA A100"
    assert find_gpu_peak("NVIDIA A10").name == "NVIDIA A10"
    assert find_gpu_peak("NVIDIA A10G") is None
    assert find_gpu_peak("Tesla T4").fp16_tensor == 65.0
    assert find_gpu_peak("NVIDIA H100 PCIe").fp16_tensor == 756.0
    assert find_gpu_peak("NVIDIA H100 80GB HBM3").tflops(Precision.FP16) == 989.5
    assert find_gpu_peak("NVIDIA H200").name == "NVIDIA H200 SXM"  # torch's name on the lent H200 machines
    assert find_gpu_peak("NVIDIA H200 NVL").fp16_tensor == 835.5
    assert find_gpu_peak("NVIDIA GeForce RTX 3090 Ti") is None
    assert find_gpu_peak("NVIDIA GeForce RTX 4090").tflops(Precision.FP32) == 82.6
    assert find_gpu_peak(None) is None


def test_gemm_peak_measures_something():
    peak = gemm_peak(sizes=(64, 96), repeats=1)
    assert peak.best > 0 and "numpy" in peak.gflops and peak.best_size["numpy"] in (64, 96)
    assert peak.to_dict()["best"] == peak.best


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_holds_every_scalar():
    rows = derive(ROWS, cpu_peak_gflops=150.0)
    back = read_csv(to_csv(rows))
    assert back == [{k: "" if getattr(r, k) is None else str(getattr(r, k)) for k in SCALARS} for r in rows]
    assert "step_ms" not in back[0]  # per-frame times are in the JSON only


def test_json_round_trip_and_files(tmp_path):
    meta = {"host": {"host": "h", "cpu": "cpu"}, "settings": {"precision": "fp32", "height": 128, "width": 224},
            "cpu_gemm_peak": {"best": 100.0, "gflops": {"numpy": 100.0}, "best_size": {"numpy": 1024}}}
    folder = ResultFolder(tmp_path / "r", meta)
    for r in ROWS:
        folder.add(r)
    meta_back, rows = read_results(tmp_path / "r")
    assert meta_back == json.loads(json.dumps(meta))
    assert rows == derive(ROWS, cpu_peak_gflops=100.0)
    assert float(read_csv((tmp_path / "r" / CSV_FILE).read_text())[1]["speedup"]) == pytest.approx(1.5)
    text = format_report(meta_back, rows)
    assert "L=4 [tiny-L4]" in text and "CPU float32 GEMM peak: numpy 100.0 GFLOP/s" in text and "failed" in text


def test_put_keeps_the_fastest_pass(tmp_path):
    folder = ResultFolder(tmp_path, {})
    slow, fast = row("L=4", 4, 2.0, 20.0), row("L=4", 4, 4.0, 20.0)
    slow.pass_medians_ms, fast.pass_medians_ms = [500.0], [250.0]
    folder.put(slow)
    folder.put(fast)
    folder.put(dataclasses.replace(slow, pass_medians_ms=[510.0]))
    assert len(folder.rows) == 1
    assert folder.rows[0].fps == 4.0 and folder.rows[0].pass_medians_ms == [500.0, 250.0, 510.0]


def test_compare(tmp_path):
    a = derive(ROWS)
    b = derive([dataclasses.replace(ROWS[0], fps=4.0), dataclasses.replace(ROWS[1], fps=5.0),
                row("L=8", 8, 6.0, 15.0)])
    pairs = compare(a, b)
    assert [p.configuration for p in pairs] == ["SimVOS-B (L=0) [tiny-L0]", "L=4 [tiny-L4]",
                                                "L=4 + TR 128/128 [tiny-L4-tr9x9]", "L=8 [tiny-L8]"]
    assert pairs[0].ratio == pytest.approx(2.0) and pairs[1].ratio == pytest.approx(5.0 / 3.0)
    assert pairs[1].speedup_b == pytest.approx(1.25)
    assert pairs[2].ratio is None and pairs[3].fps_a is None and pairs[3].fps_b == 6.0
    for name, rows in (("a", ROWS), ("b", b)):
        folder = ResultFolder(tmp_path / name, {"settings": {}, "host": {}})
        for r in rows:
            folder.add(r)
    text, pairs2 = compare_folders(tmp_path / "a", tmp_path / "b")
    assert pairs2 == pairs
    assert "B/A" in text and "2.00" in text
    with pytest.raises(InputError, match="no results.json"):
        compare_folders(tmp_path / "a", tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / JSON_FILE).write_text("{}")
    with pytest.raises(InputError, match="not a simvos-bench result file"):
        read_results(tmp_path / "bad")
