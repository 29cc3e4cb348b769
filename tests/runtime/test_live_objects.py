"""Objects that join, get corrected and leave mid-video: the reference's semantics against independent
expectations, every backend against the reference, resume, and the bad inputs (issue 18)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from goldens import load_golden  # noqa: E402

from simvos_trt.errors import InputError  # noqa: E402
from simvos_trt.model import propagate  # noqa: E402
from simvos_trt.runtime import Keyframe, VideoSegmenter  # noqa: E402

TOL = 1e-4
NEAR_TIE = 1e-3


def live_schedule(name: str) -> tuple[np.ndarray, dict[int, np.ndarray], dict[int, list[int]]]:
    """A golden video made live: its last object joins at frame 2 with a new id 7 beside it, object 1 is
    corrected at frame 3 (to the official labels), object 2 leaves before frame 4."""
    case = load_golden(name)
    last = int(case.first_mask.max())
    first = np.where(case.first_mask == last, 0, case.first_mask).astype(np.uint8)
    joins = np.where(case.labels[2] == last, last, 0).astype(np.uint8)
    joins[4:20, -40:-8] = 7
    corrected = np.where(case.labels[3] == 1, 1, 0).astype(np.uint8)
    return case.frames, {0: first, 2: joins, 3: corrected}, {4: [2]}


def run_live(video, frames, masks, removals):
    """[(object_ids, labels, prob)] of a runtime video driven through the schedule."""
    out = []
    for t, frame in enumerate(frames):
        if t in removals:
            video.remove_objects(removals[t])
        if t == 0:
            labels, prob = video.start(frame, masks[0], return_prob=True)
        else:
            labels, prob = video.step(frame, masks.get(t), return_prob=True)
        out.append((video.object_ids, labels, prob))
    return out


def as_reference(out, every_id) -> tuple[np.ndarray, np.ndarray]:
    """The runtime's outputs laid out as ``propagate``'s: (T, H, W) labels, (T, len(every_id)+1, H, W) prob."""
    labels = np.stack([lab for _, lab, _ in out])
    prob = np.zeros((len(out), len(every_id) + 1, *labels.shape[1:]), np.float32)
    for t, (ids, _, p) in enumerate(out):
        prob[t, [0, *(list(every_id).index(i) + 1 for i in ids)]] = p
    return labels, prob


def reference_labels(prob: np.ndarray, masks: dict[int, np.ndarray], every_id) -> np.ndarray:
    """Labels from reference probabilities: the most probable channel, the mask where a mask states an object."""
    lut = np.array([0, *every_id], np.uint8)
    labels = lut[prob.argmax(1)]
    for t, mask in masks.items():
        labels[t] = np.where(mask != 0, mask, labels[t])
    return labels


def decided(prob: np.ndarray) -> np.ndarray:
    top2 = np.sort(prob, axis=1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]) > NEAR_TIE


# --- the reference's semantics -------------------------------------------------------------------------------


def test_one_first_mask_is_the_mapping_of_frame_0(golden_exports):
    exp, case = golden_exports["tiny_L4_tr"], load_golden("tiny_L4_tr")
    np.testing.assert_array_equal(propagate(exp.model, case.frames, {0: case.first_mask}),
                                  golden_exports.reference("tiny_L4_tr"))


@pytest.mark.parametrize("name", ["tiny_L0", "tiny_L2_tr_odd"])
def test_stating_every_object_again_restarts_the_video(name, golden_exports):
    """A mask that states every alive object at frame 3 gives what a video starting at frame 3 gives."""
    exp, case = golden_exports[name], load_golden(name)
    restated = case.labels[3]
    live = propagate(exp.model, case.frames, {0: case.first_mask, 3: restated})
    restart = propagate(exp.model, case.frames[3:], restated)
    np.testing.assert_allclose(live[3:], restart, atol=1e-6)
    np.testing.assert_array_equal(live[:3], golden_exports.reference(name)[:3])


def test_a_late_object_is_absent_before_it_joins_and_stated_where_it_joins(golden_exports):
    exp = golden_exports["tiny_L2_tr_odd"]
    frames, masks, _ = live_schedule("tiny_L2_tr_odd")
    prob = propagate(exp.model, frames, masks)  # channels: background, 1, 2, 3, 7
    assert prob.shape[1] == 5
    assert not prob[:2, 3:].any()  # objects 3 and 7 before frame 2
    np.testing.assert_array_equal(prob[:2, :3], propagate(exp.model, frames[:2], masks[0]))
    labels = reference_labels(prob, masks, [1, 2, 3, 7])
    assert (labels[2][masks[2] == 7] == 7).all() and (labels[2][masks[2] == 3] == 3).all()
    assert (labels[4:] == 7).any()  # the late object is propagated after it joined


def test_a_removed_object_leaves_the_outputs_from_its_frame_on(golden_exports):
    exp = golden_exports["tiny_L0"]
    frames, masks, _ = live_schedule("tiny_L0")  # ids 1, 2 (joins at 2), 7
    kept = propagate(exp.model, frames, masks)
    removed = propagate(exp.model, frames, masks, removals={4: [2]})
    assert removed[4:, 2].max() == 0 and kept[4:, 2].max() > 0.1
    np.testing.assert_array_equal(removed[:4], kept[:4])
    np.testing.assert_allclose(removed.sum(1), 1, atol=1e-5)


def test_the_reference_refuses_a_removed_object_coming_back(golden_exports):
    exp = golden_exports["tiny_L0"]
    frames, masks, _ = live_schedule("tiny_L0")
    with pytest.raises(InputError, match="ids \\[1\\] were removed earlier"):
        propagate(exp.model, frames, masks, removals={2: [1]})
    with pytest.raises(InputError, match="not alive before frame 1"):
        propagate(exp.model, frames, masks, removals={1: [7]})
    with pytest.raises(InputError, match="frame 9 is not a frame"):
        propagate(exp.model, frames, {**masks, 9: masks[2]})


# --- every backend equals the reference ----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "backend"), [("tiny_L2_tr_odd", "onnxruntime"), ("tiny_L0", "onnxruntime"),
                                               ("tiny_L2_tr_odd", "torch")])
def test_backends_reproduce_the_reference_on_a_live_video(name, backend, golden_exports):
    exp = golden_exports[name]
    frames, masks, removals = live_schedule(name)
    every_id = [1, 2, 3, 7] if name == "tiny_L2_tr_odd" else [1, 2, 7]
    ref = propagate(exp.model, frames, masks, removals)
    options = {"model": exp.model} if backend == "torch" else {"threads": 2}
    with VideoSegmenter.open(exp.folder, backend, **options) as seg:
        out = run_live(seg.video(), frames, masks, removals)
    labels, prob = as_reference(out, every_id)
    without_2 = [i for i in every_id if i != 2]
    assert [ids.tolist() for ids, _, _ in out][3:] == [every_id, without_2, without_2]
    assert np.abs(prob - ref).max() <= TOL
    ok = decided(ref)
    np.testing.assert_array_equal(labels[ok], reference_labels(ref, masks, every_id)[ok])


def test_fp16_graphs_agree_with_the_reference_on_a_live_video(golden_exports):
    exp = golden_exports.fp16("tiny_L2_tr_odd")
    frames, masks, removals = live_schedule("tiny_L2_tr_odd")
    ref = propagate(golden_exports["tiny_L2_tr_odd"].model, frames, masks, removals)
    with VideoSegmenter.open(exp.folder, "onnxruntime", threads=2) as seg:
        labels, _ = as_reference(run_live(seg.video(), frames, masks, removals), [1, 2, 3, 7])
    agree = (labels == reference_labels(ref, masks, [1, 2, 3, 7])).mean()
    assert agree >= 0.995, agree


def test_objects_beyond_a_batch_are_chunked_when_they_join(small_export):
    """The small export decodes at most 2 objects a run: 3 alive objects, two of them fresh, need 2 runs."""
    g = np.random.default_rng(0)
    frames = g.integers(0, 80, (6, 32, 48, 3), dtype=np.uint8)
    first, joins = np.zeros((32, 48), np.uint8), np.zeros((32, 48), np.uint8)
    for t in range(6):  # three bright boxes drifting right
        for k in range(3):
            frames[t, 10 * k : 10 * k + 8, 4 + 8 * k + t : 20 + 8 * k + t] = 150 + 40 * k
    first[0:8, 4:20] = 1
    joins[10:18, 14:30], joins[20:28, 22:38] = 2, 3
    masks = {0: first, 2: joins}
    ref = propagate(small_export.model, frames, masks)
    with VideoSegmenter.open(small_export.folder, "onnxruntime", threads=2) as seg:
        _, prob = as_reference(run_live(seg.video(), frames, masks, {}), [1, 2, 3])
    assert np.abs(prob - ref).max() <= TOL


# --- resume ----------------------------------------------------------------------------------------------------


def test_resume_after_a_frame_that_states_every_object_is_exact(golden_exports):
    exp, case = golden_exports["tiny_L2_tr_odd"], load_golden("tiny_L2_tr_odd")
    masks = {0: case.first_mask, 3: case.labels[3]}
    with VideoSegmenter.open(exp.folder, "onnxruntime", threads=2) as seg:
        whole = run_live(seg.video(), case.frames, masks, {})
        video = seg.video()
        key = Keyframe(3, case.frames[3], whole[3][1])
        video.resume([(key, [1, 2, 3])], key)
        resumed = [video.step(frame, return_prob=True) for frame in case.frames[4:]]
    for (_, labels, prob), (labels2, prob2) in zip(whole[4:], resumed, strict=True):
        np.testing.assert_array_equal(labels, labels2)
        np.testing.assert_allclose(prob, prob2, atol=1e-6)


def test_resume_mid_video_is_exact_with_the_last_objects_and_close_without(golden_exports):
    exp = golden_exports["tiny_L2_tr_odd"]
    frames, masks, removals = live_schedule("tiny_L2_tr_odd")
    references = [(2, [3, 7]), (3, [1])]
    with VideoSegmenter.open(exp.folder, "onnxruntime", threads=2) as seg:
        video = seg.video()
        whole = run_live(video, frames[:5], masks, removals)
        objects = video.last_objects()
        whole.append((None, *video.step(frames[5], return_prob=True)))
        resumed = {}
        for mode in ("objects", "labels"):
            video = seg.video()
            video.resume([(Keyframe(t, frames[t], whole[t][1]), ids) for t, ids in references],
                         Keyframe(4, frames[4], whole[4][1]), objects=objects if mode == "objects" else None)
            assert video.object_ids.tolist() == [1, 3, 7]
            resumed[mode] = video.step(frames[5], return_prob=True)
    np.testing.assert_array_equal(resumed["objects"][0], whole[5][1])
    np.testing.assert_allclose(resumed["objects"][1], whole[5][2], atol=1e-6)
    # From the labels alone: 88 % of this random-weight model's labels (its probabilities are soft: max ~0.5).
    assert (resumed["labels"][0] == whole[5][1]).mean() >= 0.85


# --- bad input: one line, the video unchanged --------------------------------------------------------------------


def test_bad_later_masks_are_refused_and_the_video_goes_on(golden_exports):
    exp, case = golden_exports["tiny_L4_tr"], load_golden("tiny_L4_tr")  # at most 4 objects
    H, W = case.first_mask.shape
    many = np.zeros((H, W), np.uint8)
    for k, i in enumerate([3, 4, 5]):
        many[k * 10 : k * 10 + 8, :8] = i
    with VideoSegmenter.open(exp.folder, "onnxruntime", threads=2) as seg:
        clean = list(seg.segment(case.frames[:4], case.first_mask))
        video = seg.video()
        video.start(case.frames[0], case.first_mask)
        with pytest.raises(InputError, match="would make 5 objects.*--max-objects 5"):
            video.step(case.frames[1], many)
        with pytest.raises(InputError, match="differs from the first frame"):
            video.step(case.frames[1], np.ones((H, W - 1), np.uint8))
        with pytest.raises(InputError, match="no object"):
            video.step(case.frames[1], np.zeros((H, W), np.uint8))
        with pytest.raises(InputError, match="0..255"):
            video.step(case.frames[1], np.full((H, W), 300, np.uint16))
        with pytest.raises(InputError, match="not objects of the video"):
            video.remove_objects([2, 9])
        assert video.object_ids.tolist() == [1, 2]
        np.testing.assert_array_equal(video.step(case.frames[1]), clean[1])
        video.remove_objects([2])
        with pytest.raises(InputError, match="ids \\[2\\] were removed"):
            video.step(case.frames[2], np.where(case.labels[2] == 2, 2, 0).astype(np.uint8))
        with pytest.raises(InputError, match="not objects of the video.*\\[2\\] were removed before"):
            video.remove_objects([2])
        assert video.object_ids.tolist() == [1]
        assert set(np.unique(video.step(case.frames[2]))) <= {0, 1}


def test_a_video_whose_objects_all_left_is_background_until_one_joins(golden_exports):
    exp, case = golden_exports["tiny_L4_tr"], load_golden("tiny_L4_tr")
    with VideoSegmenter.open(exp.folder, "onnxruntime", threads=2) as seg:
        video = seg.video()
        video.start(case.frames[0], case.first_mask)
        video.remove_objects([1, 2])
        labels, prob = video.step(case.frames[1], return_prob=True)
        assert not labels.any() and prob.shape == (1, *labels.shape) and (prob == 1).all()
        joined = np.where(case.labels[2] == 2, 5, 0).astype(np.uint8)
        np.testing.assert_array_equal(video.step(case.frames[2], joined), joined)
        assert video.object_ids.tolist() == [5]
        assert (video.step(case.frames[3]) == 5).any()
