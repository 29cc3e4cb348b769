"""The GPU measurement kit: its dry run end to end on the CPU (as CI runs it), the timed step (the
runtime's, on the kit's manifest) against the reference, and the per-phase budget. The CUDA-only
parts (CUDA graphs, inductor) run only on a GPU; the dry run records them as skipped."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from simvos_trt.bench.gpukit import DRY_PLAN, Budget, Kit, kit_manifest, paper_rows  # noqa: E402
from simvos_trt.bench.results import ResultFolder, read_results  # noqa: E402
from simvos_trt.bench.runner import OPSET  # noqa: E402
from simvos_trt.manifest import Precision, Weights  # noqa: E402
from simvos_trt.model import propagate, random_model  # noqa: E402
from simvos_trt.runtime import VideoSegmenter, VideoSession  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def test_dry_run_end_to_end(tmp_path):
    out = tmp_path / "kit"
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(REPO / "benchmarks/gpu/run.sh"), "--dry-run", str(out)], capture_output=True,
                          text=True, timeout=180, env={**os.environ, "PYTHON": sys.executable})
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert seconds < 125, seconds  # KIT_SECONDS = 120 for a dry run, install included
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in files} == {"results.json", "results.csv", "report.txt", "fps_vs_L.png", "run.log"}
    assert len(files) <= 8 and all(p.stat().st_size < 16 * 2**20 and len(p.relative_to(out).parts) <= 3
                                   for p in files)
    assert (out / "fps_vs_L.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log = (out / "run.log").read_text()  # installed offline, or (no pip/setuptools here) run from the tree
    assert "nothing downloaded" in log or "running simvos_trt from the source tree" in log

    meta, rows = read_results(out)
    assert meta["kit"]["dry_run"] and meta["host"]["torch"] == torch.__version__ and meta["host"]["device"] == "cpu"
    assert meta["settings"]["height"] == DRY_PLAN.height and meta["gpu_peak"] is None
    phases = {p["name"]: p for p in meta["kit"]["phases"]}
    assert list(phases) == [name for name, _ in DRY_PLAN.phases]
    assert phases["cudagraph-fp16"]["status"] == "skipped"
    assert phases["cudagraph-fp16"]["skipped"] == ["CUDA graphs need a CUDA device"]
    for p in phases.values():  # every phase ran or says why not, and says what it skipped
        assert p["status"] in ("done", "partial", "skipped"), p
        assert (p["status"] == "done") == (not p["skipped"]), p
    golden = meta["golden"]
    assert golden and all(g["passed"] and g["frames"] == DRY_PLAN.golden_frames for g in golden)
    assert {g["case"] for g in golden} <= {"tiny_L0", "tiny_L4", "tiny_L4_tr", "tiny_L2_tr_odd"}
    assert all(g["fp32_max_abs_diff"] <= 1e-4 and g["fp16_label_agreement"] >= 0.995 for g in golden)

    measured = [r for r in rows if r.ok]
    assert measured and all(r.status == "ok" for r in rows)
    assert {(r.backend, r.precision) for r in measured} <= {("torch", "fp16"), ("torch", "fp32"),
                                                           ("torch-compile", "fp16")}
    for r in measured:
        assert r.device == "cpu" and r.height == DRY_PLAN.height and r.objects == DRY_PLAN.objects
        assert DRY_PLAN.minimum <= r.frames == len(r.step_ms) <= DRY_PLAN.frames
        assert r.median_ms == pytest.approx(float(np.median(r.step_ms))) and r.p90_ms >= r.median_ms
        assert r.fps == pytest.approx(1000 / r.median_ms) and r.gflop > 0 and r.paper_fps
    done = {name for p in phases.values() for name in p["done"]}
    assert {r.config for r in measured} <= done
    assert measured[0].config == "tiny-L0"  # B first: every speedup is measured against it
    report = (out / "report.txt").read_text()
    assert "DRY RUN" in report and "golden videos" in report and "| configuration | paper FPS (A100)" in report
    assert json.loads((out / "results.json").read_text())["format"] == "simvos-bench/1"


@pytest.mark.parametrize("precision", list(Precision))
def test_kit_manifest_is_what_an_export_writes(tmp_path, precision):
    """The kit's manifest (no graph files) records the tensors, dtypes and precisions a real export records."""
    from simvos_trt.export.onnx_export import ExportSettings, export_folder

    row = paper_rows(DRY_PLAN)[-1]  # token refinement: memory tokens Kf + Kb
    assert row.config.token_refinement
    settings = ExportSettings(DRY_PLAN.height, DRY_PLAN.width, DRY_PLAN.objects, OPSET, precision=precision)
    real = export_folder(random_model(row.config, seed=1), tmp_path / "export", settings,
                         checkpoint=Weights("random", seed=1))
    kit = kit_manifest(row.config, DRY_PLAN, precision)
    assert kit.precision == real.precision and kit.max_objects == real.max_objects
    for name, entry in real.graphs.items():
        got = kit.graphs[name]
        assert (got.inputs, got.outputs, got.precision) == (entry.inputs, entry.outputs, entry.precision), name


def test_the_kit_times_the_runtime_step(tmp_path):
    """The timed step is ``VideoSession.step`` of the torch backend: a row timed by the kit runs frames through
    the runtime, and the runtime's labels on the kit's manifest equal ``propagate``'s (the reference)."""
    writer = ResultFolder(tmp_path, {"host": {}}, None)
    kit = Kit(DRY_PLAN, torch.device("cpu"), writer)
    row = paper_rows(DRY_PLAN)[0]
    calls = []
    step = VideoSession.step

    def counting(session, frame, *args, **kwargs):
        calls.append(frame)
        return step(session, frame, *args, **kwargs)

    budget = Budget((("eager-fp32", 60.0),), seconds=60.0)
    with budget.phase("eager-fp32") as ph, pytest.MonkeyPatch.context() as mp:
        mp.setattr(VideoSession, "step", counting)
        kit.measure(row, "eager", Precision.FP32, ph)
    (record,) = writer.rows
    assert record.ok and record.backend == "torch" and record.frames == len(record.step_ms) == DRY_PLAN.frames
    assert len(calls) == 1 + DRY_PLAN.warmup + DRY_PLAN.frames  # the first step, warm-up, timed steps

    video = kit.video
    frames = video.frames[:4]
    want = propagate(kit.model(row.config), frames, video.first_mask).argmax(1)  # (T, H, W)
    folder = tmp_path / "manifest"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(kit_manifest(row.config, DRY_PLAN, Precision.FP32).to_dict()))
    with VideoSegmenter.open(folder, "torch", verify=False, model=kit.model(row.config)) as seg:
        got = np.stack(list(seg.segment(frames, video.first_mask)))
    np.testing.assert_array_equal(got[1:], want[1:])


def test_budget_rolls_unused_time_forward_and_records_skips():
    budget = Budget((("a", 10.0), ("b", 20.0), ("report", 5.0)), seconds=70.0)
    t0 = time.monotonic()
    ends = [p.end - t0 for p in budget.phases.values()]
    assert ends == pytest.approx([10, 30, 35], abs=0.5)  # cumulative: what a leaves, b may use
    with budget.phase("a") as ph:
        assert ph.fits("x", 1.0) and not ph.fits("y", 100.0)
    assert budget.phases["a"].status == "partial" and budget.phases["a"].skipped[0].startswith("y: needs ~100 s")
    with budget.phase("b"):
        pass
    assert budget.phases["b"].status == "done" and budget.phases["b"].used_s < 1
    scaled = Budget((("a", 60.0), ("report", 40.0)), seconds=50.0)  # more asked than given: scaled to fit
    assert [p.budget_s for p in scaled.phases.values()] == [30.0, 20.0]
    assert scaled.phases["report"].end - time.monotonic() == pytest.approx(50, abs=0.5)
