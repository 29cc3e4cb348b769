"""The streaming runtime against the reference ``propagate`` and the official golden videos."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from goldens import GOLDEN_CASES, load_golden  # noqa: E402
from videos import SMALL, moving_video  # noqa: E402

from simvos_trt.errors import InputError  # noqa: E402
from simvos_trt.model import propagate  # noqa: E402
from simvos_trt.runtime import VideoSegmenter  # noqa: E402

TOL = 1e-4


def run_video(folder, frames, mask, backend="onnxruntime", **options):
    """(labels (T, H, W) uint8, prob (T, K+1, H, W) float32) from the runtime."""
    if backend == "onnxruntime":
        options.setdefault("threads", 2)
    with VideoSegmenter.open(folder, backend, **options) as seg:
        out = list(seg.segment(frames, mask, return_prob=True))
    return np.stack([lab for lab, _ in out]), np.stack([p for _, p in out])


@pytest.mark.parametrize("name", GOLDEN_CASES)
def test_onnxruntime_reproduces_reference_and_golden(name, golden_exports):
    exp, case = golden_exports[name], load_golden(name)
    labels, prob = run_video(exp.folder, case.frames, case.first_mask)
    assert prob.shape == case.prob.shape and prob.dtype == np.float32 and labels.dtype == np.uint8
    assert np.abs(prob - golden_exports.reference(name)).max() <= TOL
    assert np.abs(prob - case.prob).max() <= TOL
    np.testing.assert_array_equal(labels[0], case.first_mask)
    np.testing.assert_array_equal(labels[1:], prob[1:].argmax(1))


@pytest.mark.parametrize("name", GOLDEN_CASES)
def test_torch_backend_reproduces_reference(name, golden_exports):
    exp, case = golden_exports[name], load_golden(name)
    _, prob = run_video(exp.folder, case.frames, case.first_mask, "torch", model=exp.model)
    assert np.abs(prob - golden_exports.reference(name)).max() <= TOL
    assert np.abs(prob - case.prob).max() <= TOL


def test_io_binding_path_equals_plain_run(golden_exports):
    exp, case = golden_exports["tiny_L2_tr_odd"], load_golden("tiny_L2_tr_odd")
    plain = run_video(exp.folder, case.frames[:3], case.first_mask)
    bound = run_video(exp.folder, case.frames[:3], case.first_mask, io_binding=True)
    np.testing.assert_array_equal(plain[0], bound[0])
    np.testing.assert_allclose(plain[1], bound[1], atol=1e-6)


def test_original_ids_are_kept_and_graph_labels_equal_argmax(golden_exports):
    exp, case = golden_exports["tiny_L2_tr_odd"], load_golden("tiny_L2_tr_odd")
    lut = np.zeros(256, np.uint8)
    lut[[1, 2, 3]] = [7, 42, 255]
    frames = case.frames[:3]
    labels, prob = run_video(exp.folder, frames, lut[case.first_mask])
    assert np.abs(prob - case.prob[:3]).max() <= TOL  # channels follow the increasing ids
    np.testing.assert_array_equal(labels, lut[prob.argmax(1)])
    with VideoSegmenter.open(exp.folder, "onnxruntime", threads=2) as seg:
        fast = np.stack(list(seg.segment(frames, lut[case.first_mask])))  # labels from the graph
    np.testing.assert_array_equal(fast, labels)


def test_more_objects_than_the_batch_run_in_chunks(small_export):
    frames, mask = moving_video(5, *SMALL, objects=3)
    _, prob = run_video(small_export.folder, frames, mask)  # 3 objects, batches of at most 2
    assert prob.shape[1] == 4
    assert np.abs(prob - propagate(small_export.model, frames, mask)).max() <= TOL


def test_token_refinement_needs_all_objects_in_one_batch(golden_exports):
    case = load_golden("tiny_L4_tr")
    mask = (np.arange(case.first_mask.size).reshape(case.first_mask.shape) % 5 + 1).astype(np.uint8)
    with VideoSegmenter.open(golden_exports["tiny_L4_tr"].folder, "onnxruntime") as seg:
        with pytest.raises(InputError, match="--max-objects 5"):
            seg.start(case.frames[0], mask)


def test_float_input_graphs(float_export):
    frames, mask = moving_video(4, *SMALL, objects=2)
    _, prob = run_video(float_export.folder, frames, mask)
    assert np.abs(prob - propagate(float_export.model, frames, mask)).max() <= TOL


def test_resized_frames_map_back_to_their_size(small_export):
    """64x96 frames in a 32x48 engine = the reference on the downscaled video, upscaled back."""
    H, W = SMALL
    frames, mask = moving_video(4, 2 * H, 2 * W, objects=2)
    labels, prob = run_video(small_export.folder, frames, mask)
    small = np.stack([cv2.resize(f, (W, H), interpolation=cv2.INTER_LINEAR) for f in frames])
    ref = propagate(small_export.model, small, cv2.resize(mask, (W, H), interpolation=cv2.INTER_NEAREST))
    ref = np.stack([cv2.resize(p.transpose(1, 2, 0), (2 * W, 2 * H), interpolation=cv2.INTER_LINEAR)
                    for p in ref]).transpose(0, 3, 1, 2)
    assert prob.shape == (4, 3, 2 * H, 2 * W) and np.abs(prob - ref).max() <= TOL
    np.testing.assert_array_equal(labels[0], mask)
    np.testing.assert_array_equal(labels[1:], prob[1:].argmax(1))


@pytest.mark.parametrize("size", [(40, 40), (20, 30), (33, 47)])
def test_any_frame_size(size, small_export):
    frames, mask = moving_video(3, *size, objects=2)
    labels, prob = run_video(small_export.folder, frames, mask)
    assert labels.shape == (3, *size) and prob.shape == (3, 3, *size)
    assert np.isfinite(prob).all() and np.allclose(prob.sum(1), 1, atol=1e-4)
    assert set(np.unique(labels)) <= {0, 1, 2}


def test_videos_in_parallel_threads_equal_sequential(small_export):
    videos = [moving_video(5, *SMALL, objects=k, seed=k) for k in (1, 2, 3)]
    with VideoSegmenter.open(small_export.folder, "onnxruntime", threads=1) as seg:
        expected = [np.stack(list(seg.segment(f, m))) for f, m in videos]
        got: dict[int, np.ndarray] = {}

        def work(i):
            got[i] = np.stack(list(seg.segment(*videos[i])))

        threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for i in range(3):
        np.testing.assert_array_equal(got[i], expected[i])
