"""Engine verification (eval.engines) and the GPU acceptance run (cli.acceptance).

Here: the comparison rules and tolerances on arrays, the reports, the acceptance report
files and its exit without a GPU. With fake engines: tests/runtime/test_trt_backend.py.
On a GPU (``gpu`` marker): engines of tiny FP16 and FP32 exports verified for real, and a video.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
from videos import gpu_missing

from simvos_trt.bench.measure import Measurement
from simvos_trt.bench.results import dated_name
from simvos_trt.cli import acceptance
from simvos_trt.cli.common import EXIT_ERROR
from simvos_trt.eval.engines import (
    EngineReport,
    Tolerance,
    compare,
    compare_outputs,
    label_agreement,
    reference_outputs,
    tolerance_for,
)
from simvos_trt.manifest import Weights

F32 = np.dtype("float32")


# --------------------------------------------------------------------------- tolerances and comparisons


def test_tolerances_by_the_graphs_precision():
    assert tolerance_for("prob", F32, "fp16") == Tolerance(0.05, 0.0, "max")
    assert tolerance_for("query", np.dtype("float16"), "fp16") == Tolerance(0.0, 2e-2, "rel_l2")
    assert tolerance_for("memory", F32, "fp32") == Tolerance(1e-4, 1e-3, "elemwise")
    assert tolerance_for("labels", np.dtype("uint8"), "fp32").min_agreement == 0.999
    assert tolerance_for("labels", np.dtype("uint8"), "fp16").min_agreement == 0.98
    with pytest.raises(ValueError, match="check: 'p99'"):
        Tolerance(check="p99")


def test_elemwise_fails_an_element_only_beyond_both_tolerances():
    tol = Tolerance(atol=1e-3, rtol=1e-2)
    ref = np.array([100.0, 0.0, 1.0], np.float32)
    ok = compare("g", "y", 1, ref + np.array([0.5, 5e-4, 0.0], np.float32), ref, tol)  # rel 0.005; abs 5e-4
    assert ok.passed and ok.mismatched == 0 and ok.max_abs == pytest.approx(0.5) and ok.excess <= 1
    bad = compare("g", "y", 1, ref + np.array([2.0, 0.0, 0.0], np.float32), ref, tol)  # abs 2 and rel 0.02
    assert not bad.passed and bad.mismatched == pytest.approx(1 / 3) and bad.excess == pytest.approx(2.0)
    zero = compare("g", "y", 1, np.array([0.01], np.float32), np.array([0.0], np.float32), tol)
    assert not zero.passed and zero.max_rel > 1e10  # zeros of the reference: relative error against 2.2e-16


def test_nan_never_matches_and_shapes_must_agree():
    tol = Tolerance(atol=1.0, rtol=1.0)
    assert not compare("g", "y", 1, np.array([np.nan], np.float32), np.array([1.0], np.float32), tol).passed
    check = compare("g", "y", 2, np.zeros((1, 3), np.float32), np.zeros((2, 3), np.float32), tol)
    assert not check.passed and check.excess == float("inf")


@pytest.mark.parametrize("check, err, passed", [("max", 0.04, True), ("max", 0.06, False),
                                                 ("mean", 0.06, False), ("median", 0.04, True)])
def test_statistic_checks(check, err, passed):
    ref = np.full(100, 0.5, np.float32)
    got = ref + err
    assert compare("g", "prob", 1, got, ref, Tolerance(atol=0.05, rtol=0.0, check=check)).passed is passed


def test_rel_l2_is_scale_free():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(1000).astype(np.float32)
    for scale in (1e-3, 1.0, 1e3):
        noisy = (ref + 0.01 * rng.standard_normal(1000).astype(np.float32)) * scale
        check = compare("q", "query", 1, noisy, ref * scale, Tolerance(atol=0, rtol=2e-2, check="rel_l2"))
        assert check.passed and check.rel_l2 == pytest.approx(0.01, rel=0.2)
    far = compare("q", "query", 1, ref * 1.1, ref, Tolerance(atol=0, rtol=2e-2, check="rel_l2"))
    assert not far.passed and far.excess == pytest.approx(5.0, rel=1e-3)


def test_labels_need_their_agreement():
    ref = np.zeros((1, 10, 100), np.uint8)
    got = ref.copy()
    got[0, 0, :2] = 1  # 0.2 % differ
    assert compare("aggregate", "labels", 1, got, ref, Tolerance(min_agreement=0.999)).passed is False
    assert compare("aggregate", "labels", 1, got, ref, Tolerance(min_agreement=0.99)).passed is True


def test_report_names_the_worst_tensor():
    ref = {"prob": np.full((2, 1, 4, 4), 0.5, np.float32)}
    report = EngineReport("engines/x", "fp16")
    report.checks += compare_outputs("joint_decoder_1mem", 2, {"prob": ref["prob"] + 0.07}, ref, "fp16")
    report.checks += compare_outputs("joint_decoder_2mem", 2, {"prob": ref["prob"] + 0.2}, ref, "fp16")
    report.checks += compare_outputs("query_encoder", 1, {"query": np.ones((1, 3, 2), np.float32)},
                                     {"query": np.ones((1, 3, 2), np.float32)}, "fp16")
    assert not report.passed
    message = report.failure()
    assert message is not None and message.startswith("2 of 3 engine outputs of engines/x (fp16)")
    assert "worst: joint_decoder_2mem.prob (2 objects): max abs 0.2" in message
    table = report.table().splitlines()
    assert table[0].split() == ["graph", "objects", "output", "max", "abs", "max", "rel", "rel", "l2", "tolerance",
                                "result"]
    assert table[3].split()[:2] == ["joint_decoder_2mem", "2"] and table[3].endswith("FAILED")
    assert report.table(markdown=True).splitlines()[1] == "| --- | --- | --- | --- | --- | --- | --- | --- |"
    json.dumps(report.to_dict(), allow_nan=False)  # finite numbers only


def test_a_missing_output_fails():
    want = {"background": np.zeros((1, 1, 2, 2), np.float32), "labels": np.zeros((1, 2, 2), np.uint8)}
    checks = compare_outputs("aggregate", 1, {"background": want["background"]}, want, "fp16")
    assert [c.passed for c in checks] == [True, False] and checks[1].integer
    assert "0.000 % equal" in checks[1].summary()
    report = EngineReport("f", "fp16", checks)
    json.dumps(report.to_dict(), allow_nan=False)


def test_label_agreement():
    a = np.zeros((3, 4, 5), np.uint8)
    b = a.copy()
    b[1, 0, :] = 2  # 5 of 20 pixels of frame 1
    agreement = label_agreement(a, b)
    assert agreement.per_frame == (1.0, 0.75, 1.0) and agreement.worst_frame == 1
    assert agreement.mean == pytest.approx(2.75 / 3) and agreement.to_dict()["min"] == 0.75
    with pytest.raises(ValueError, match="3 frames vs 2"):
        label_agreement(a, b[:2])
    with pytest.raises(ValueError, match="frame 0 has shape"):
        label_agreement(a, np.zeros((3, 4, 6), np.uint8))


class FakeSession:
    """session.run(names, feed) of a graph that sums its inputs over tokens; records the batch sizes."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def run(self, names, feed):
        self.batches.append(len(feed["memory_first"]))
        return [sum(v.sum(axis=(1, 2)) for v in feed.values())[:, None]]


def test_decoder_references_run_one_object_at_a_time():
    rng = np.random.default_rng(0)
    inputs = {"query": rng.random((1, 4, 3)), "memory_first": rng.random((3, 4, 3)),
              "memory_prev": rng.random((3, 4, 3))}
    session = FakeSession()
    out = reference_outputs(session, "joint_decoder_2mem", ["prob"], inputs)
    assert session.batches == [1, 1, 1]
    want = inputs["query"].sum() + inputs["memory_first"].sum(axis=(1, 2)) + inputs["memory_prev"].sum(axis=(1, 2))
    np.testing.assert_allclose(out["prob"][:, 0], want)
    session = FakeSession()
    reference_outputs(session, "memory_encoder", ["memory"], {"memory_first": inputs["memory_first"]})
    assert session.batches == [3]  # token refinement ties the objects together: one batch


# --------------------------------------------------------------------------- the acceptance run


def sample_report(passed: bool = True) -> acceptance.AcceptanceReport:
    verification = EngineReport("engines/acceptance/BS-480x864", "fp16")
    ref = {"prob": np.full((2, 1, 4, 4), 0.5, np.float32)}
    verification.checks += compare_outputs("joint_decoder_2mem", 2, {"prob": ref["prob"] + (0 if passed else 0.3)},
                                           ref, "fp16")
    stamp = {"gpu": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0", "tensorrt": "tensorrt 11.4.0.1",
             "cuda_driver": "12.4", "cuda_runtime": "12.9", "nvidia_driver": "550.54.15", "host": "gpu-1",
             "platform": "Linux-x86_64", "cpu": "AMD EPYC", "date": "2026-12-01T10:00:00+00:00"}
    settings = {"height": 480, "width": 864, "max_objects": 8, "frames": 100, "warmup": 10, "objects": 2}
    report = acceptance.AcceptanceReport(stamp, settings)
    # median 41.5 ms; p90 of three steps: 41.5 + 0.8 * (43.0 - 41.5) = 42.7 ms; 1000 / 41.5 = 24.10 FPS
    throughput = Measurement(step=(40.0, 41.5, 43.0), stages={}, warmup=10)
    report.variants.append(acceptance.VariantResult("BS", "random (seed 1)", "engines/acceptance/BS-480x864", 9.9,
                                                    verification=verification, throughput=throughput))
    same = label_agreement(np.zeros((2, 3, 3), np.uint8), np.zeros((2, 3, 3), np.uint8))
    report.golden.append(acceptance.GoldenResult("tiny_L0", (3, 3), (16, 16), EngineReport("golden", "fp16"),
                                                 vs_reference=same, vs_onnxruntime=same))
    return report


def test_report_files(tmp_path):
    json_path, md_path = acceptance.write_report(tmp_path / "out", sample_report())
    data = json.loads(json_path.read_text())
    assert data["passed"] is True and data["failures"] == [] and data["stamp"]["tensorrt"] == "tensorrt 11.4.0.1"
    assert data["variants"][0]["throughput"]["fps"] == pytest.approx(1000 / 41.5)
    assert data["golden"][0]["vs_reference"] == {"mean": 1.0, "min": 1.0, "worst_frame": 0, "frames": 2,
                                                 "per_frame": [1.0, 1.0]}
    text = md_path.read_text()
    assert text.startswith("# simvos-trt acceptance: NVIDIA A100-SXM4-80GB (2026-12-01T10:00:00+00:00)\n\n**PASSED**")
    assert "| BS | random (seed 1) | 41.50 | 42.70 | 24.10 | 9.90 |" in text
    assert "| tiny_L0 | 2 | 1.0000 / 1.0000 | 1.0000 / 1.0000 | ok |" in text
    assert "| nvidia_driver | 550.54.15 |" in text and "## Engines of BS vs ONNX Runtime" in text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["README.md", "acceptance.json"]


def test_a_failed_check_fails_the_report(tmp_path):
    report = sample_report(passed=False)
    report.golden[0].vs_reference = label_agreement(np.eye(10, dtype=np.uint8)[None], np.zeros((1, 10, 10), np.uint8))
    failures = report.failures()
    assert len(failures) == 2 and failures[0].startswith("BS: 1 of 1 engine outputs")
    assert "golden tiny_L0: TensorRT labels agree with the reference on 0.9000" in failures[1]
    _, md_path = acceptance.write_report(tmp_path, report)
    assert "**FAILED**\n- BS: 1 of 1" in md_path.read_text()


def test_report_folder_names_are_safe():
    assert dated_name("gpu box.local", "acceptance", dt.date(2026, 12, 1)) == "2026-12-01-gpu-box.local-acceptance"
    assert dated_name("a/../b:c", "tensorrt", dt.date(2026, 1, 2)) == "2026-01-02-a-..-b-c-tensorrt"


@pytest.mark.skipif(gpu_missing() is None, reason="TensorRT and a GPU are here")
def test_acceptance_without_a_gpu_exits_3(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert acceptance.main(["--out", str(tmp_path / "report")]) == acceptance.EXIT_MISSING
    err = capsys.readouterr().err
    assert err.startswith("simvos-acceptance: the acceptance run needs TensorRT, cuda-python, an NVIDIA GPU and torch")
    assert "NVIDIA GPU" in err
    assert not (tmp_path / "report").exists() and not (tmp_path / "engines").exists()


def test_acceptance_never_writes_its_report_over_other_files(tmp_path, capsys, monkeypatch):
    """The claim comes right after the environment check (faked here: no GPU is needed to refuse)."""
    monkeypatch.setattr(acceptance, "environment", lambda device: {"host": "h", "gpu": "g"})
    (tmp_path / "README.md").write_text("the user's own README")
    assert acceptance.main(["--out", str(tmp_path)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did not write; it is left alone" in err
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]


def test_acceptance_help_needs_no_gpu(capsys):
    with pytest.raises(SystemExit) as info:
        acceptance.main(["--help"])
    assert info.value.code == 0 and "--checkpoint-bs" in capsys.readouterr().out


# --------------------------------------------------------------------------- on a GPU


@pytest.fixture(scope="module", params=["fp16", "fp32"])
def tiny_export(request, tmp_path_factory):
    pytest.importorskip("torch")
    from simvos_trt.config import SimVOSConfig
    from simvos_trt.export.onnx_export import ExportSettings, export_folder
    from simvos_trt.export.trt_build import build_engines
    from simvos_trt.model import random_model
    from simvos_trt.trt.plan import BuildSettings

    out = tmp_path_factory.mktemp("verify") / request.param
    model = random_model(SimVOSConfig(backbone="tiny", layer_index=1, token_refinement=True, kf=8, kb=8), seed=1)
    export_folder(model, out, ExportSettings(32, 48, max_objects=3, precision=request.param),
                  checkpoint=Weights("random", seed=1))
    build_engines(out, BuildSettings(workspace_mib=1024))
    return out


@pytest.mark.gpu
@pytest.mark.skipif(gpu_missing() is not None, reason=str(gpu_missing()))
def test_engines_pass_verification(tiny_export):
    from simvos_trt.eval.engines import verify_engines

    report = verify_engines(tiny_export)
    assert report.passed, report.failure()
    assert {(c.graph, c.objects) for c in report.checks} >= {("joint_decoder_2mem", 1), ("joint_decoder_2mem", 3)}


@pytest.mark.gpu
@pytest.mark.skipif(gpu_missing() is not None, reason=str(gpu_missing()))
def test_tensorrt_labels_agree_with_onnxruntime_on_a_video(tiny_export):
    from simvos_trt.bench.measure import moving_shapes
    from simvos_trt.eval.engines import segment_labels

    video = moving_shapes(32, 48, objects=2, frames=8)
    tensorrt = segment_labels(tiny_export, video.frames, video.first_mask, "tensorrt")
    agreement = label_agreement(tensorrt, segment_labels(tiny_export, video.frames, video.first_mask, "onnxruntime"))
    assert agreement.mean > 0.98, agreement.to_dict()
