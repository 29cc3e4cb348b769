"""FP16 graphs on ONNX Runtime (CPU) over the official golden videos, and against the PyTorch emulation of
the same precision rules (``model.precision.to_fp16``, run by the torch backend on the FP16 export)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from goldens import GOLDEN_CASES, load_golden  # noqa: E402
from test_parity import run_video  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("name", GOLDEN_CASES)
def test_fp16_graphs_agree_with_the_official_labels(name, golden_exports):
    exp, case = golden_exports.fp16(name), load_golden(name)
    labels, prob = run_video(exp.folder, case.frames, case.first_mask)
    assert np.isfinite(prob).all()  # tiny_L2_tr_odd includes the object whose weight map vanishes
    agreement = (labels[1:] == case.labels[1:]).mean()
    assert agreement >= 0.995, agreement  # measured: 0.9992 (L2 TR odd) to 0.9996 (L4 TR)
    assert np.abs(prob - case.prob).max() < 0.02  # measured: 1.3e-3 to 1.6e-3


@pytest.mark.slow
def test_fp16_graphs_agree_with_the_pytorch_emulation(golden_exports):
    exp, case = golden_exports.fp16("tiny_L2_tr_odd"), load_golden("tiny_L2_tr_odd")
    ort_labels, ort_prob = run_video(exp.folder, case.frames[:4], case.first_mask)
    torch_labels, torch_prob = run_video(exp.folder, case.frames[:4], case.first_mask, "torch", model=exp.model)
    assert (ort_labels == torch_labels).mean() >= 0.995
    assert np.abs(ort_prob - torch_prob).max() < 0.02


def test_the_fp16_stages_agree_with_the_emulation_stage_by_stage(golden_exports):
    """Same inputs into each graph: the two float16 implementations differ only by kernel rounding."""
    from simvos_trt.manifest import read_manifest
    from simvos_trt.runtime.backends import create_backend

    exp = golden_exports.fp16("tiny_L4_tr")
    m = read_manifest(exp.folder)
    rng = np.random.default_rng(0)
    frame = {"frame": rng.integers(0, 256, (1, m.height, m.width, 3), dtype=np.uint8),
             "padding": np.array([0, 0, 0, 0], np.int64)}
    masks = np.zeros((2, 1, m.height, m.width), np.float32)
    masks[0, :, :40, :60], masks[1, :, 60:, 100:] = 1, 1
    out = {}
    for name, opts in (("onnxruntime", {}), ("torch", {"model": exp.model})):
        with create_backend(name, exp.folder, m, **opts) as be:
            query = be.run("query_encoder", {k: be.from_host(v) for k, v in frame.items()})["query"]
            memory = be.run("memory_encoder", {**{k: be.from_host(v) for k, v in frame.items()},
                                               "masks": be.from_host(masks)})["memory"]
            prob = be.run("joint_decoder_1mem", {"query": query, "memory_first": memory})["prob"]
            out[name] = {k: be.to_host(v).astype(np.float32) for k, v in
                         (("query", query), ("memory", memory), ("prob", prob))}
            assert be.dtype_and_shape(query)[0] == be.dtype_and_shape(memory)[0] == "float16"
            assert be.dtype_and_shape(prob)[0] == "float32"
    for key in ("query", "memory"):
        a, b = out["onnxruntime"][key], out["torch"][key]
        assert np.linalg.norm(a - b) / np.linalg.norm(b) < 5e-3, key
    assert np.abs(out["onnxruntime"]["prob"] - out["torch"]["prob"]).max() < 5e-3
