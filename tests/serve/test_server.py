"""A real simvos-serve server gives exactly the in-process runtime's outputs, alone and under concurrency."""

from __future__ import annotations

import json
import threading
import urllib.request

import numpy as np
import pytest
from goldens import GOLDEN_CASES, load_golden
from videos import moving_video

from simvos_trt.runtime import VideoSegmenter


@pytest.fixture(scope="module")
def local(golden_export):
    """The in-process runtime over the same export, with the server's thread count."""
    with VideoSegmenter.open(golden_export, "onnxruntime", threads=1) as seg:
        yield seg


@pytest.mark.parametrize("name", GOLDEN_CASES)
def test_golden_videos_equal_in_process(name, golden_client, local):
    case = load_golden(name)
    remote = list(golden_client.segment(case.frames, case.first_mask, return_prob=True))
    expected = list(local.segment(case.frames, case.first_mask, return_prob=True))
    assert len(remote) == len(expected) == len(case.frames)
    for t, ((labels, prob), (labels_ref, prob_ref)) in enumerate(zip(remote, expected, strict=True)):
        assert labels.dtype == np.uint8 and prob.dtype == np.float32
        np.testing.assert_array_equal(labels, labels_ref, err_msg=f"frame {t}")
        np.testing.assert_allclose(prob, prob_ref, atol=1e-6, err_msg=f"frame {t}")  # threads may reorder sums
    assert set(np.unique(remote[-1][0])) <= set(np.unique(case.first_mask))


def test_four_videos_at_once_equal_one_after_another(golden_server, local):
    from simvos_trt.serve import SegmentationClient

    videos = [moving_video(4, 96 + 8 * i, 160, objects=1 + i % 3, seed=i) for i in range(4)]
    expected = [list(local.segment(frames, mask)) for frames, mask in videos]
    results: dict[int, list[np.ndarray]] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            with SegmentationClient(golden_server.url) as client:
                results[i] = list(client.segment(*videos[i]))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert not errors, errors
    for i in range(4):
        for t, (got, want) in enumerate(zip(results[i], expected[i], strict=True)):
            np.testing.assert_array_equal(got, want, err_msg=f"video {i}, frame {t}")


def test_plain_http_json_client(golden_server, local):
    """The documented protocol, spoken by hand over Triton's HTTP/JSON API, as a client in any language would."""
    frames, mask = moving_video(2, 40, 64, objects=2, seed=7)
    base = f"http://127.0.0.1:{golden_server.http_port}"

    def infer(parameters: dict, tensors: dict[str, np.ndarray]) -> dict:
        body = {"parameters": parameters,
                "inputs": [{"name": k, "datatype": "UINT8", "shape": list(v.shape), "data": v.ravel().tolist()}
                           for k, v in tensors.items()]}
        req = urllib.request.Request(f"{base}/v2/models/simvos/infer", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as response:
            return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in json.load(response)["outputs"]}

    first = infer({"video_id": "http-1", "start": True}, {"frame": frames[0], "mask": mask})
    second = infer({"video_id": "http-1", "frame_index": 1, "end": True}, {"frame": frames[1]})
    expected = list(local.segment(frames, mask))
    np.testing.assert_array_equal(first["labels"], mask)
    np.testing.assert_array_equal(first["object_ids"], [1, 2])
    np.testing.assert_array_equal(second["labels"], expected[1])
    with urllib.request.urlopen(f"{base}/v2/health/ready", timeout=10) as response:
        assert response.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{golden_server.metrics_port}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert 'nv_inference_request_success{model="simvos",version="1"}' in metrics


def test_tritonclient_http(golden_server, local):
    """Triton's own HTTP client (binary tensors; it adds binary_data_output, which Triton keeps to itself)."""
    import tritonclient.http as http

    frames, mask = moving_video(2, 40, 64, objects=2, seed=8)
    with http.InferenceServerClient(f"127.0.0.1:{golden_server.http_port}") as client:
        answers = []
        for i, frame in enumerate(frames):
            inputs = [http.InferInput("frame", list(frame.shape), "UINT8")]
            inputs[0].set_data_from_numpy(frame)
            if i == 0:
                inputs.append(http.InferInput("mask", list(mask.shape), "UINT8"))
                inputs[1].set_data_from_numpy(mask)
            parameters = {"video_id": "http-2", "start": i == 0, "end": i == len(frames) - 1, "return_prob": True}
            answers.append(client.infer("simvos", inputs, parameters=parameters))
    for answer, (labels, prob) in zip(answers, local.segment(frames, mask, return_prob=True), strict=True):
        np.testing.assert_array_equal(answer.as_numpy("labels"), labels)
        np.testing.assert_array_equal(answer.as_numpy("prob"), prob)


def _late_corrected_removed(frames: np.ndarray, mask: np.ndarray) -> tuple[dict[int, np.ndarray], dict[int, list]]:
    """Annotations of a video: objects 1, 2 from frame 0, 7 joins at frame 2, 1 is corrected at frame 3 (shifted
    right), 2 is removed before frame 4."""
    late = np.zeros_like(mask)
    late[-24:, 8:40] = 7
    corrected = np.where(np.roll(mask, 6, axis=1) == 1, 1, 0).astype(np.uint8)
    return {0: np.minimum(mask, 2), 2: late, 3: corrected}, {4: [2]}


def _run(video, frames: np.ndarray, masks: dict[int, np.ndarray], removals: dict[int, list]) -> list:
    out = []
    for t, frame in enumerate(frames):
        if t in removals:
            video.remove_objects(removals[t])
        if t == 0:
            out.append(video.start(frame, masks[0], return_prob=True))
        else:
            out.append(video.step(frame, masks.get(t), return_prob=True))
        out.append(video.object_ids.copy())
    return out


@pytest.mark.parametrize("shared_memory", [False, True])
def test_late_corrected_and_removed_objects_equal_local(golden_server, local, shared_memory):
    """Masks on later frames and removals through the server, by gRPC and by shared memory, give exactly what the
    in-process session gives (labels, probabilities, object ids after each frame)."""
    from simvos_trt.serve import SegmentationClient

    frames, mask = moving_video(6, 96, 160, objects=2, seed=9)
    masks, removals = _late_corrected_removed(frames, mask)
    with SegmentationClient(golden_server.url, shared_memory=shared_memory) as client, client.video() as remote:
        got = _run(remote, frames, masks, removals)
        assert (remote._region is not None) == shared_memory
    want = _run(local.video(), frames, masks, removals)
    assert [ids.tolist() for ids in got[1::2]] == [[1, 2], [1, 2], [1, 2, 7], [1, 2, 7], [1, 7], [1, 7]]
    for t, (g, w) in enumerate(zip(got[0::2], want[0::2], strict=True)):
        np.testing.assert_array_equal(g[0], w[0], err_msg=f"frame {t}")
        np.testing.assert_array_equal(g[1], w[1], err_msg=f"frame {t}")
    for g, w in zip(got[1::2], want[1::2], strict=True):
        np.testing.assert_array_equal(g, w)


def test_removing_an_unknown_object_is_refused_and_changes_nothing(golden_client, local):
    from simvos_trt.errors import ServeError

    frames, mask = moving_video(3, 64, 96, objects=2, seed=4)
    with golden_client.video() as remote:
        got = [remote.start(frames[0], mask)]
        with pytest.raises(ServeError, match=r"remove_objects: ids \[5\] are not objects of the video"):
            remote.remove_objects([5, 1])
        assert remote.object_ids.tolist() == [1, 2]
        got += [remote.step(f) for f in frames[1:]]
    for g, w in zip(got, local.segment(frames, mask), strict=True):
        np.testing.assert_array_equal(g, w)
