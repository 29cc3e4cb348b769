"""Bad input gives a clear InputError / ManifestError and leaves the video's state untouched."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from videos import SMALL, moving_video

from simvos_trt.errors import InputError
from simvos_trt.manifest import ManifestError, read_manifest
from simvos_trt.runtime import BackendError, VideoSegmenter
from simvos_trt.runtime.backends import Backend, create_backend

H, W = SMALL


@pytest.fixture(scope="module")
def seg(small_export):
    with VideoSegmenter.open(small_export.folder, "onnxruntime", threads=2) as s:
        yield s


@pytest.fixture(scope="module")
def video():
    return moving_video(4, H, W, objects=2)


def labels_of(seg, frames, mask, **kw):
    return np.stack(list(seg.segment(frames, mask, **kw)))


@pytest.mark.parametrize("mask, match", [
    (np.zeros((H, W + 1), np.uint8), r"shape \(32, 49\) differs from the first frame's"),
    (np.zeros((H, W), np.uint8), "no object"),
    (np.full((H, W), 300, np.int32), r"0\.\.255"),
    (np.full((H, W), -1, np.int16), r"0\.\.255"),
    (np.ones((H, W), np.float32), "integer index mask"),
    (np.ones((H, W, 1), np.uint8), r"\(H, W\) index mask"),
])
def test_bad_first_mask(seg, video, mask, match):
    with pytest.raises(InputError, match=match):
        seg.start(video[0][0], mask)


def test_mask_of_other_integer_types_and_bool(seg, video):
    frames, mask = video
    expected = labels_of(seg, frames, mask)
    np.testing.assert_array_equal(labels_of(seg, frames, mask.astype(np.int64)), expected)
    assert set(np.unique(labels_of(seg, frames[:2], mask > 0))) <= {0, 1}


@pytest.mark.parametrize("frame, match", [
    (np.zeros((H, W, 3), np.float32), "dtype float32, expected uint8"),
    (np.zeros((H, W, 2), np.uint8), r"shape \(32, 48, 2\)"),
    (np.zeros((3, H, W), np.uint8), r"shape \(3, 32, 48\)"),
    ([[0]], "numpy array"),
])
def test_bad_frames(seg, video, frame, match):
    with pytest.raises(InputError, match=match):
        seg.start(frame, video[1])
    session = seg.start(video[0][0], video[1])
    with pytest.raises(InputError, match=match):
        session.step(frame)


def test_grayscale_alpha_and_bgr_frames(seg, video):
    frames, mask = video
    gray = frames[..., 1]
    rgb_of_gray = labels_of(seg, np.repeat(gray[..., None], 3, axis=3), mask)
    np.testing.assert_array_equal(labels_of(seg, gray, mask), rgb_of_gray)
    np.testing.assert_array_equal(labels_of(seg, gray[..., None], mask), rgb_of_gray)
    rgb = labels_of(seg, frames, mask)
    rgba = np.concatenate([frames, np.full(frames.shape[:3] + (1,), 7, np.uint8)], axis=3)
    np.testing.assert_array_equal(labels_of(seg, rgba, mask), rgb)
    bgr = np.ascontiguousarray(frames[..., ::-1])
    np.testing.assert_array_equal(labels_of(seg, bgr, mask, bgr=True), rgb)


def test_frame_size_change_mid_video_keeps_the_state(seg, video):
    frames, mask = video
    expected = labels_of(seg, frames, mask)
    session = seg.start(frames[0], mask)
    got = [session.step(frames[1])]
    with pytest.raises(InputError, match=r"frame 2: size 32x47 differs from the video's 32x48"):
        session.step(frames[2][:, :-1])
    got += [session.step(f) for f in frames[2:]]
    np.testing.assert_array_equal(np.stack(got), expected[1:])


def test_step_before_start(seg, video):
    session = seg.video()
    for call in (lambda: session.step(video[0][1]), lambda: session.object_ids, lambda: session.remove_objects([1])):
        with pytest.raises(InputError, match=r"^the video is not started: call start\(first_frame, first_mask\)"):
            call()


def test_empty_video(seg, video):
    with pytest.raises(InputError, match="no frame"):
        next(seg.segment(iter([]), video[1]))


def test_closed_segmenter(small_export, video):
    with VideoSegmenter.open(small_export.folder, "onnxruntime") as s:
        session = s.start(video[0][0], video[1])
    with pytest.raises(BackendError, match="closed"):
        session.step(video[0][1])


def test_vanishing_object_comes_back(small_export, video):
    """Object 2 vanishes from the predicted masks of frames 1-2 (all-zero memory mask), then returns."""
    frames, mask = video
    calls = {"n": 0}

    class Vanish(Backend):
        name = "vanish"

        def __init__(self, inner):
            super().__init__(inner.folder, inner.manifest)
            self.inner = inner

        def _open(self):
            self.inner.open()

        def _close(self):
            self.inner.close()

        def _run(self, graph, inputs):
            out = self.inner.run(graph, inputs)
            if graph == "aggregate":
                calls["n"] += 1
                if calls["n"] in (2, 3):  # frames 1 and 2 (call 1 is frame 0's probabilities)
                    out["objects"][1] = 0.0
            return out

        def to_host(self, h):
            return self.inner.to_host(h)

        def from_host(self, a):
            return self.inner.from_host(a)

        def dtype_and_shape(self, h):
            return self.inner.dtype_and_shape(h)

    folder = small_export.folder
    inner = create_backend("onnxruntime", folder, read_manifest(folder), threads=2)
    with VideoSegmenter(Vanish(inner)) as s:
        probs = [p for _, p in s.segment(np.concatenate([frames, frames]), mask, return_prob=True)]
    assert calls["n"] == 8 and all(np.isfinite(p).all() and p.shape == (3, H, W) for p in probs)


# ---------------------------------------------------------------- export folders


def copy_export(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_missing_folder(tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        VideoSegmenter.open(tmp_path / "nope")


def test_folder_without_manifest(tmp_path):
    with pytest.raises(ManifestError, match="not a complete export"):
        VideoSegmenter.open(tmp_path)


def test_missing_or_modified_graph(small_export, tmp_path):
    folder = copy_export(small_export.folder, tmp_path / "a")
    (folder / "aggregate.onnx").unlink()
    with pytest.raises(ManifestError, match="aggregate"):
        VideoSegmenter.open(folder)
    folder = copy_export(small_export.folder, tmp_path / "b")
    with open(folder / "query_encoder.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ManifestError, match="sha256"):
        VideoSegmenter.open(folder)


def test_incompatible_manifest_version(small_export, tmp_path):
    folder = copy_export(small_export.folder, tmp_path / "old")
    data = json.loads((folder / "manifest.json").read_text())
    data["format"] = "simvos-trt/0"
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="incompatible"):
        VideoSegmenter.open(folder)


def test_manifest_without_a_required_graph(small_export, tmp_path):
    folder = copy_export(small_export.folder, tmp_path / "partial")
    data = json.loads((folder / "manifest.json").read_text())
    del data["graphs"]["joint_decoder_1mem"]
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="joint_decoder_1mem"):
        VideoSegmenter.open(folder)


def edited_export(src, dst, edit):
    folder = copy_export(src, dst)
    data = json.loads((folder / "manifest.json").read_text())
    edit(data)
    (folder / "manifest.json").write_text(json.dumps(data))
    return folder


@pytest.mark.parametrize("edit, error, match", [
    (lambda d: d.update(height=64), ManifestError, r"frame is recorded as \(1, 32, 48, 3\), but the 64x48"),
    (lambda d: d.update(height="32"), ManifestError, r"height: got '32' \(str\)"),
    (lambda d: d["graphs"]["aggregate"].update(precision="fp8"), ManifestError, "'fp8' is not a valid Precision"),
    (lambda d: d["graphs"]["query_encoder"]["inputs"][1].update(name="pad"), ManifestError,
     "query_encoder.onnx has the tensors .* not those its manifest records"),
])
def test_manifest_that_disagrees_with_its_graphs(small_export, tmp_path, edit, error, match):
    folder = edited_export(small_export.folder, tmp_path / "e", edit)
    with pytest.raises(error, match=match):
        VideoSegmenter.open(folder, "onnxruntime")


@pytest.mark.parametrize("call, match", [
    (lambda f: VideoSegmenter.open(123), r"folder: got 123 \(int\), expected the path of an export folder"),
    (lambda f: VideoSegmenter.open(f / "manifest.json"), "is a file, not an export folder"),
    (lambda f: VideoSegmenter.open(f, "onnxruntime", thread=2), "unknown option thread for the onnxruntime backend"),
    (lambda f: VideoSegmenter.open(f, "torch", threads=2), "unknown option threads for the torch backend"),
    (lambda f: VideoSegmenter.open(f, "onnxruntime", threads=-3), "threads: got -3, expected an int >= 1"),
    (lambda f: VideoSegmenter.open(f, "onnxruntime", threads=2.5), r"threads: got 2.5 \(float\)"),
    (lambda f: VideoSegmenter.open(f, verify="no"), "verify: got 'no'"),
    (lambda f: VideoSegmenter.open(f, backend=None), "backend: got None"),
])
def test_bad_open_arguments(small_export, call, match):
    with pytest.raises(InputError, match=match):
        call(small_export.folder)


def test_bad_segment_arguments(seg, video):
    frames, mask = video
    with pytest.raises(InputError, match="frames: got NoneType, expected an iterable"):
        list(seg.segment(None, mask))
    with pytest.raises(InputError, match="frames: got str"):
        list(seg.segment("clip.mp4", mask))
    with pytest.raises(InputError, match=r"shape \(32, 48, 3\), not a video: .* pass a single frame"):
        list(seg.segment(frames[0], mask))
    with pytest.raises(InputError, match="return_prob: got 'yes'"):
        list(seg.segment(frames, mask, return_prob="yes"))
    for key in [4, -1, True, "2"]:  # past the end, negative, a bool, a string
        message = f"masks: {key!r} is not the index of a frame of the video (0..3)"
        with pytest.raises(InputError, match=re.escape(message)):
            list(seg.segment(frames, {0: mask, key: mask}))
    with pytest.raises(InputError, match=r"masks: 4 is not the index of a frame of the video \(0\.\.3\)"):
        list(seg.segment(iter(frames), {0: mask, 4: mask}))  # a generator's frames are counted at its end
    with pytest.raises(InputError, match="bgr: got 1"):
        seg.start(frames[0], mask, bgr=1)
    session = seg.start(frames[0], mask)
    with pytest.raises(InputError, match="return_prob: got None"):
        session.step(frames[1], return_prob=None)
    assert session.step(frames[1]).shape == (H, W)  # the refused call left the session as it was
