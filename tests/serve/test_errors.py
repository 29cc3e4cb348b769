"""Bad requests get a clear error in the response, and the server goes on serving."""

from __future__ import annotations

import numpy as np
import pytest
from videos import moving_video

from simvos_trt.errors import InputError, ServeError
from simvos_trt.runtime import VideoSegmenter
from simvos_trt.serve import FrameRequest
from simvos_trt.serve.protocol import grpc_address

H, W = 24, 40  # resized into the 32x48 engine


@pytest.fixture(scope="module")
def video():
    return moving_video(3, H, W, objects=2, seed=5)


def _bad_requests(client, frames, mask, case: str) -> None:
    """Send the bad request(s) of ``case``; the last one must raise."""
    f0, f1 = frames[0], frames[1]
    if case in ("ended", "other_size", "out_of_order", "started_twice"):
        client.infer(FrameRequest(case, start=True, frame=f0, mask=mask, end=case == "ended"))
    request = {
        "before_start": FrameRequest("before_start", frame=f1),
        "ended": FrameRequest("ended", frame=f1),
        "mask_size": FrameRequest("mask_size", start=True, frame=f0, mask=mask[:, :-1]),
        "other_size": FrameRequest("other_size", frame=np.zeros((H + 16, W, 3), np.uint8)),
        "frame_dtype": FrameRequest("dtype", start=True, frame=f0.astype(np.float32), mask=mask),
        "mask_dtype": FrameRequest("dtype", start=True, frame=f0, mask=mask.astype(np.int64)),
        "channels": FrameRequest("channels", start=True, frame=f0[:, :, :2], mask=mask),
        "out_of_order": FrameRequest("out_of_order", frame=f1, frame_index=2),
        "started_twice": FrameRequest("started_twice", start=True, frame=f0, mask=mask),
    }[case]
    client.infer(request)


@pytest.mark.parametrize("case, message", [
    ("before_start", "video 'before_start' is not open (it was never started); a video's first request carries "
                     "start=true"),
    ("ended", "video 'ended' is not open (it was closed: it ended)"),
    ("mask_size", "mask: shape (24, 39) differs from the first frame's (H, W) = (24, 40)"),
    ("other_size", "frame 1: size 40x40 differs from the video's 24x40"),
    ("frame_dtype", "inference input 'frame' data-type is 'FP32', but model 'simvos' expects 'UINT8'"),
    ("mask_dtype", "inference input 'mask' data-type is 'INT64', but model 'simvos' expects 'UINT8'"),
    ("channels", "frame: got shape (24, 40, 2), expected (H, W, 3)"),
    ("out_of_order", "got frame_index 2, expected 1; send a video's frames in order"),
    ("started_twice", "video 'started_twice' is already open"),
])
def test_bad_request_is_refused_and_the_server_goes_on(case, message, small_client, video, small_export):
    frames, mask = video
    with pytest.raises(ServeError) as info:
        _bad_requests(small_client, frames, mask, case)
    text = str(info.value)
    assert text.startswith(f"server {small_client.url}: ") and message in text
    assert "Traceback" not in text and "\n" not in text
    if case in ("other_size", "out_of_order", "started_twice"):  # still open: a refused frame does not end it
        small_client.infer(FrameRequest(case, end=True))
    with VideoSegmenter.open(small_export, "onnxruntime", threads=1) as local:
        expected = list(local.segment(frames, mask))
    for got, want in zip(small_client.segment(frames, mask), expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_refused_frame_leaves_the_video_usable(small_client, video, small_export):
    frames, mask = video
    remote = small_client.video("keeps-going")
    first = remote.start(frames[0], mask)
    with pytest.raises(ServeError, match="differs from the video's"):
        remote.step(np.zeros((H + 8, W, 3), np.uint8))
    got = [first] + [remote.step(f) for f in frames[1:]]
    remote.close()
    with VideoSegmenter.open(small_export, "onnxruntime", threads=1) as local:
        for g, want in zip(got, local.segment(frames, mask), strict=True):
            np.testing.assert_array_equal(g, want)


def test_request_parameters_are_checked():
    with pytest.raises(InputError, match="parameter 'start': got 'yes', expected a bool"):
        FrameRequest.parse({}, {"video_id": "v", "start": "yes"})
    with pytest.raises(InputError, match="no parameter 'video_id'"):
        FrameRequest.parse({}, {"start": True})
    with pytest.raises(InputError, match="start=true needs the first frame"):
        FrameRequest.parse({"frame": np.zeros((2, 2, 3), np.uint8)}, {"video_id": "v", "start": True})
    with pytest.raises(InputError, match="only a request with end=true may carry none"):
        FrameRequest.parse({}, {"video_id": "v"})
    with pytest.raises(InputError, match="video_id: got ''"):
        FrameRequest.parse({}, {"video_id": "", "end": True})
    request = FrameRequest("v", start=True, frame_index=0, frame=np.zeros((2, 2, 3), np.uint8),
                           mask=np.ones((2, 2), np.uint8))
    assert request.parameters() == {"video_id": "v", "start": True, "frame_index": 0}


def test_a_misspelt_parameter_is_refused_not_ignored(small_server):
    import tritonclient.grpc as grpc
    from tritonclient.utils import InferenceServerException

    from simvos_trt.serve.protocol import server_message

    with grpc.InferenceServerClient(small_server.url) as client, pytest.raises(InferenceServerException) as info:
        client.infer("simvos", [], parameters={"video_id": "v", "end": True, "return_probs": True})
    assert server_message(info.value.message()) == ("unknown parameter 'return_probs'; expected ['bgr', 'end', "
                                                    "'frame_index', 'return_prob', 'start', 'video_id']")


def test_too_many_objects_for_token_refinement(golden_client):
    """ONNX Runtime chunks objects beyond --max-objects, except where token refinement couples them."""
    frame, mask = np.zeros((32, 80, 3), np.uint8), (np.arange(80) // 16 + 1).astype(np.uint8)[None].repeat(32, 0)
    with pytest.raises(ServeError, match="the video has 5 objects but this export's memory encoder takes at most 4"):
        golden_client.video("five").start(frame, mask)
    assert golden_client.video("two").start(frame, np.minimum(mask, 2)).shape == (32, 80)
    golden_client.infer(FrameRequest("two", end=True))


@pytest.mark.parametrize("url, address", [("localhost", "localhost:8001"), ("10.0.0.7:9001", "10.0.0.7:9001"),
                                          ("[::1]", "[::1]:8001"), ("[::1]:8101", "[::1]:8101")])
def test_server_address_defaults_to_the_grpc_port(url, address):
    assert grpc_address(url) == address


@pytest.mark.parametrize("url", ["localhost:abc", "localhost:0", "localhost:70000", ":8001", "", 8001])
def test_a_malformed_server_address_is_refused(url):
    with pytest.raises(InputError, match="expected HOST:PORT"):
        grpc_address(url)
