"""Bad requests get a clear error in the response, and the server goes on serving."""

from __future__ import annotations

import numpy as np
import pytest
from videos import moving_video

from simvos_trt.errors import InputError, RequestRefused, ServeError
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


def test_a_remote_video_before_start_says_so(small_client, video):
    remote = small_client.video("not-yet")
    for call in (lambda: remote.step(video[0][1]), lambda: remote.object_ids, lambda: remote.remove_objects([1])):
        with pytest.raises(InputError, match=r"^video 'not-yet' is not started; call start\(first_frame, "):
            call()


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


def test_oversized_requests_are_refused_while_other_videos_go_on(small_client, video, small_export):
    frames, mask = video
    remote = small_client.video("goes-on")
    got = [remote.start(frames[0], mask)]
    big = np.zeros((600, 600, 3), np.uint8)
    with pytest.raises(ServeError, match=r"'frame' has 600x600 = 360000 pixels, more than this server takes "
                       r"\(250000, --max-frame-pixels\)"):
        small_client.video("huge").start(big, np.ones((600, 600), np.uint8))
    got.append(remote.step(frames[1]))
    wide_frames, wide_mask = moving_video(2, 400, 600, objects=2, seed=1)  # 240,000 pixels: taken
    wide = small_client.video("wide")
    wide.start(wide_frames[0], wide_mask)
    # labels 240,000 bytes + 2 object ids + 3 float32 probability planes 2,880,000 bytes + the state the client
    # keeps for failover, 2 float32 planes at the engine's 32x48, 12,288 bytes
    with pytest.raises(ServeError, match=r"the answer would take 3132290 bytes, more than this server sends "
                       r"\(2000000, --max-response-bytes\)"):
        wide.step(wide_frames[1], return_prob=True)
    assert wide.step(wide_frames[1]).shape == (400, 600)  # the refused frame was not consumed
    wide.close()
    got.append(remote.step(frames[2]))
    remote.close()
    with VideoSegmenter.open(small_export, "onnxruntime", threads=1) as local:
        for g, want in zip(got, local.segment(frames, mask), strict=True):
            np.testing.assert_array_equal(g, want)


def test_lazy_frames_are_decoded_ahead_and_a_decoding_error_surfaces_in_order(small_client, video, small_export):
    frames, mask = video

    def decoded(fail_at=None):  # a generator, as a decoder is: the client prefetches it in a thread
        for i, f in enumerate(frames):
            if i == fail_at:
                raise InputError(f"frame {i} is damaged")
            yield f

    with VideoSegmenter.open(small_export, "onnxruntime", threads=1) as local:
        expected = list(local.segment(frames, mask))
    for got, want in zip(small_client.segment(decoded(), mask), expected, strict=True):
        np.testing.assert_array_equal(got, want)
    got = []
    with pytest.raises(InputError, match="frame 2 is damaged"):
        got.extend(small_client.segment(decoded(fail_at=2), mask))
    assert len(got) == 2


def test_request_parameters_are_checked():
    with pytest.raises(InputError, match="parameter 'start': got 'yes', expected a bool"):
        FrameRequest.parse({}, {"video_id": "v", "start": "yes"})
    with pytest.raises(InputError, match="no parameter 'video_id'"):
        FrameRequest.parse({}, {"start": True})
    with pytest.raises(InputError, match="start=true needs the first frame"):
        FrameRequest.parse({"frame": np.zeros((2, 2, 3), np.uint8)}, {"video_id": "v", "start": True})
    with pytest.raises(InputError, match="only a request with end=true, 'remove' or resume=true may carry none"):
        FrameRequest.parse({}, {"video_id": "v"})
    with pytest.raises(InputError, match="video_id: got ''"):
        FrameRequest.parse({}, {"video_id": "", "end": True})
    request = FrameRequest("v", start=True, frame_index=0, frame=np.zeros((2, 2, 3), np.uint8),
                           mask=np.ones((2, 2), np.uint8))
    assert request.parameters() == {"video_id": "v", "start": True, "frame_index": 0}
    frame, mask, ids = np.zeros((2, 2, 3), np.uint8), np.ones((2, 2), np.uint8), np.array([1], np.uint8)
    with pytest.raises(InputError, match="'mask' states objects on the request's frame: send it with 'frame'"):
        FrameRequest.parse({"mask": mask}, {"video_id": "v"})
    with pytest.raises(InputError, match="start=true takes no 'remove' and no resume=true"):
        FrameRequest.parse({"frame": frame, "mask": mask, "remove": ids}, {"video_id": "v", "start": True})
    with pytest.raises(InputError, match=r"resume=true takes exactly the inputs \['keyframes', "):
        FrameRequest.parse({"keyframes": frame[None]}, {"video_id": "v", "resume": True})
    with pytest.raises(InputError, match="got \\['reference_ids'\\] with resume=false"):
        FrameRequest.parse({"frame": frame, "reference_ids": ids}, {"video_id": "v"})
    assert FrameRequest.parse({"remove": ids}, {"video_id": "v"}).tensors().keys() == {"remove"}
    assert FrameRequest.parse({"frame": frame, "mask": mask}, {"video_id": "v"}).mask is mask


def test_a_misspelt_parameter_is_refused_not_ignored(small_server):
    import tritonclient.grpc as grpc
    from tritonclient.utils import InferenceServerException

    from simvos_trt.serve.protocol import server_message

    with grpc.InferenceServerClient(small_server.url) as client, pytest.raises(InferenceServerException) as info:
        client.infer("simvos", [], parameters={"video_id": "v", "end": True, "return_probs": True})
    text = info.value.message()
    assert server_message(text) == ("unknown parameter 'return_probs'; expected ['bgr', 'end', "
                                    "'frame_index', 'resume', 'return_prob', 'return_state', 'start', 'video_id']")
    # the server's own frames stay in its log: what Triton adds names only PyTriton's proxy (README.md, Errors)
    assert "simvos_trt/" not in text and "_infer" not in text
    assert "simvos_trt.errors.RequestRefused: simvos-serve error: unknown parameter" in text


def test_an_unexpected_error_reaches_the_client_as_one_line(caplog):
    """What PyTriton sends a client is the formatted exception: one line; the traceback goes to the log."""
    import traceback

    from simvos_trt.serve.server import SegmentationServer

    class Broken:
        def handle(self, request):
            raise RuntimeError("device fell over at /secret/path")

    class Request(dict):
        parameters = {"video_id": "v", "end": True}

    server = object.__new__(SegmentationServer)
    server._store = Broken()
    with pytest.raises(RequestRefused) as info:
        server._infer([Request()])
    sent = "".join(traceback.format_exception(None, info.value, info.value.__traceback__))
    assert sent == ("simvos_trt.errors.RequestRefused: simvos-serve error: internal error (RuntimeError); the "
                    "server's log has the details\n")
    assert "device fell over at /secret/path" in caplog.text and "Traceback" in caplog.text


def test_objects_beyond_the_export_are_refused(golden_client, small_client):
    """More objects than --max-objects are refused by the server, even where ONNX Runtime could run them in
    chunks (the small export has no token refinement): the export bounds what a video holds."""
    frame, mask = np.zeros((32, 80, 3), np.uint8), (np.arange(80) // 16 + 1).astype(np.uint8)[None].repeat(32, 0)
    with pytest.raises(ServeError, match=r"video 'five': 5 objects, more than this export takes at once \(4\); "
                       "serve an export made with simvos-export --max-objects 5"):
        golden_client.video("five").start(frame, mask)
    with pytest.raises(ServeError, match=r"3 objects, more than this export takes at once \(2\)"):
        small_client.video("three").start(frame, np.minimum(mask, 3))
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
