"""Labels of resized videos made where the probabilities live (``Backend.resample``): the ONNX graph, the host
way and the torch ops against the old path (bilinear upsampling of every map on the host, then argmax)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from videos import SMALL, moving_video

from simvos_trt.runtime import VideoSegmenter, place
from simvos_trt.runtime.backends.ort import OrtBackend
from simvos_trt.runtime.backends.resample import Resample, resample_on_host
from simvos_trt.runtime.postprocess import resample_plan, to_ids


def old_path(prob: np.ndarray, pl) -> np.ndarray:
    """What the runtime did before: crop, cv2.resize of (h, w, 4-channel) slices, concatenated (K+1, H, W)."""
    p = pl.padding
    crop = prob[:, p.top : prob.shape[1] - p.bottom, p.left : prob.shape[2] - p.right]
    planes = [cv2.resize(np.ascontiguousarray(crop[i : i + 4].transpose(1, 2, 0)), (pl.width, pl.height),
                         interpolation=cv2.INTER_LINEAR) for i in range(0, len(crop), 4)]
    return np.concatenate([q[:, :, None] if q.ndim == 2 else q for q in planes], axis=2).transpose(2, 0, 1)


def soft_maps(k: int, engine: tuple[int, int], seed: int = 0) -> np.ndarray:
    """(K+1, He, We) float32 smooth probability maps summing to 1 (softmax of upsampled noise)."""
    g = np.random.default_rng(seed)
    He, We = engine
    logits = g.normal(size=(k + 1, max(2, He // 8), max(2, We // 8))).astype(np.float32)
    x = np.stack([cv2.resize(c, (We, He), interpolation=cv2.INTER_CUBIC) for c in logits]) * 4
    e = np.exp(x - x.max(0))
    return (e / e.sum(0)).astype(np.float32)


CASES = [((270, 480), (64, 112), 2), ((100, 61), (48, 32), 3), ((30, 50), (48, 80), 5), ((1080, 1920), (480, 864), 1)]


def as_maps(out: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([out["frame_background"], out["frame_objects"]])[:, 0]


@pytest.mark.parametrize("size, engine, k", CASES)
def test_graph_and_host_equal_the_old_path(size, engine, k):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    pl = place(*size, *engine)
    assert pl.resized
    prob = soft_maps(k, engine)
    plan = resample_plan(engine, pl)
    ref = old_path(prob, pl)
    session = ort.InferenceSession(plan.onnx_model(), providers=["CPUExecutionProvider"])
    graph = dict(zip([o.name for o in session.get_outputs()], session.run(None, {
        "background": prob[:1, None], "objects": prob[1:, None]}), strict=True))
    host = resample_on_host(plan, prob[:1, None], prob[1:, None])
    for out in (graph, host):
        assert out["labels"].shape == (1, *size) and out["labels"].dtype == np.uint8
        assert np.abs(as_maps(out) - ref).max() <= 1e-4
        assert (out["labels"][0] == ref.argmax(0)).mean() >= 0.999
        np.testing.assert_array_equal(out["labels"][0], as_maps(out).argmax(0))  # its own maps' argmax


def test_ties_go_to_the_first_channel():
    plan = Resample((4, 4), (0, 0, 4, 4), (8, 8))
    flat = np.full((1, 1, 4, 4), 0.5, np.float32)
    assert (resample_on_host(plan, flat, flat)["labels"] == 0).all()


def test_to_ids_maps_channels_to_the_videos_ids():
    channels = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    np.testing.assert_array_equal(to_ids(channels, np.array([0, 4, 9], np.uint8)), [[0, 4, 9], [9, 4, 0]])
    np.testing.assert_array_equal(to_ids(channels, np.array([0, 1, 2], np.uint8)), channels)


class HostTraffic(OrtBackend):
    """A test spy: ONNX Runtime with bound device-style handles, recording the dtype of what ``to_host`` brings."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.downloads: list[tuple[str, tuple[int, ...]]] = []

    def to_host(self, handle):
        out = super().to_host(handle)
        self.downloads.append((out.dtype.name, out.shape))
        return out


def test_backends_agree_and_only_labels_reach_the_host(small_export):
    pytest.importorskip("onnx")
    pytest.importorskip("torch")
    H, W = SMALL
    frames, mask = moving_video(4, 3 * H - 5, 3 * W + 7, objects=2)
    results = {}
    for name, options in [("graph", {"io_binding": True}), ("host", {"io_binding": False}), ("torch", {})]:
        with VideoSegmenter.open(small_export.folder, "torch" if name == "torch" else "onnxruntime",
                                 **options) as seg:
            results[name] = list(seg.segment(frames, mask, return_prob=True))
    for name in ("graph", "torch"):
        for (lab, prob), (ref_lab, ref_prob) in zip(results[name][1:], results["host"][1:], strict=True):
            assert np.abs(prob - ref_prob).max() <= 1e-4
            assert (lab == ref_lab).mean() >= 0.999
    from simvos_trt.manifest import read_manifest

    spy = HostTraffic(small_export.folder, read_manifest(small_export.folder), io_binding=True, threads=1)
    with VideoSegmenter(spy) as seg:
        session = seg.start(frames[0], mask)
        spy.downloads.clear()
        labels = session.step(frames[1])
    assert spy.downloads == [("uint8", (1, *frames.shape[1:3]))]
    np.testing.assert_array_equal(labels, results["host"][1][0])


@pytest.mark.parametrize("size, engine", [((1080, 1920), (480, 864)), ((100, 61), (48, 32))])
def test_the_resample_graph_builds_with_tensorrt_rtx(size, engine):
    """The real builder (TensorRT-RTX, ahead of time for SM80, no GPU needed) parses and builds the graph as a
    strongly typed network with the tensors of ``Resample.entry``; running it needs a GPU."""
    pytest.importorskip("tensorrt_rtx", reason="needs TensorRT-RTX (pip install 'simvos-trt[rtx]')")
    from simvos_trt.trt.engine import build_from_onnx
    from simvos_trt.trt.library import select_library
    from simvos_trt.trt.plan import plan_profile

    select_library("tensorrt_rtx")
    plan = resample_plan(engine, place(*size, *engine))
    data, io = build_from_onnx(plan.onnx_model(), plan_profile(plan.entry, (1, 2, 8)), ((8, 0),))
    assert len(data) > 1000
    assert io == {t.name: (t in plan.entry.inputs, t.dtype, tuple(-1 if d == "objects" else d for d in t.shape))
                  for t in (*plan.entry.inputs, *plan.entry.outputs)}
