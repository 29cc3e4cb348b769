"""Videos survive their server: killed (SIGKILL) mid-video with a second server up, restarted at the same
address, or the video expired. The client re-primes the video and every frame is answered once. With the state
the client keeps by default (exact_failover), the labels equal an uninterrupted run; without it, they equal the
in-process session re-primed from the last labels (``VideoSession.resume``), and agree with an uninterrupted run
to the figures below (README.md, Failover)."""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
import pytest
from goldens import load_golden
from videos import moving_video

from simvos_trt.processing import object_ids
from simvos_trt.runtime import Keyframe, VideoSegmenter
from simvos_trt.serve import SegmentationClient, ServerProcess

#: Without the state: the least fraction of equal labels per frame after a failover, against an uninterrupted
#: run, as measured on each case (random weights: probabilities far from 0 and 1, so one-hot differs).
AGREEMENT = {"golden": 0.78, "moving, a late object": 0.88, "small export": 0.86}
KILL_AFTER = 2  # frames answered before the kill


@pytest.fixture
def two_servers(server_python, golden_export, tmp_path):
    with ServerProcess(golden_export, "--threads", "1", log=tmp_path / "a.log") as a, \
            ServerProcess(golden_export, "--threads", "1", log=tmp_path / "b.log") as b:
        yield a, b


def _runs(seg: VideoSegmenter, frames: np.ndarray, masks: dict[int, np.ndarray], switch: int) -> tuple[list, list]:
    """Labels of an uninterrupted run, and of a run re-primed after frame ``switch`` from each object's reference
    keyframe (the last frame that stated it, with its labels) and the last frame, as the client does."""
    full = list(seg.segment(frames, masks))
    reference = {i: t for t in sorted(m for m in masks if m <= switch) for i in object_ids(masks[t]).tolist()}
    by_keyframe = defaultdict(list)
    for i, t in reference.items():
        by_keyframe[t].append(i)
    video = seg.video()
    video.resume([(Keyframe(t, frames[t], full[t]), ids) for t, ids in by_keyframe.items()],
                 Keyframe(switch, frames[switch], full[switch]))
    return full, full[: switch + 1] + [video.step(frames[t], masks.get(t)) for t in range(switch + 1, len(frames))]


def _agreement(got: list[np.ndarray], want: list[np.ndarray]) -> list[float]:
    return [float((g == w).mean()) for g, w in zip(got, want, strict=True)]


@pytest.mark.parametrize("exact", [True, False])
def test_a_killed_server_moves_its_videos_to_the_other(two_servers, golden_export, exact):
    a, b = two_servers
    case = load_golden("tiny_L4_tr")
    late = np.zeros((128, 192), np.uint8)
    late[96:, 16:64] = 7
    second, third = moving_video(6, 128, 192, objects=2, seed=1), moving_video(6, 128, 192, objects=2, seed=2)
    videos = [(case.frames, {0: case.first_mask}), (second[0], {0: second[1]}), (third[0], {0: third[1], 2: late})]
    with VideoSegmenter.open(golden_export, "onnxruntime", threads=1) as local:
        runs = [_runs(local, frames, masks, KILL_AFTER) for frames, masks in videos]
    with SegmentationClient(f"{a.url},{b.url}", exact_failover=exact) as client:
        ids = [f"v{i}" for i in range(64)]  # placed by rendezvous hashing of the id: two on a, one on b
        on_a, on_b = ([i for i in ids if client.place(i).url == s.url] for s in (a, b))
        remotes = [client.video(on_a[0]), client.video(on_b[0]), client.video(on_a[1])]
        got: list[list[np.ndarray]] = [[] for _ in videos]
        for t in range(6):
            if t == KILL_AFTER + 1:
                a.kill()
            for remote, (frames, masks), out in zip(remotes, videos, got, strict=True):
                out.append(remote.start(frames[0], masks[0]) if t == 0 else remote.step(frames[t], masks.get(t)))
        assert [r.server for r in remotes] == [b.url, b.url, b.url]
        assert [r.moves for r in remotes] == [1, 0, 1]
        assert remotes[2].object_ids.tolist() == [1, 2, 7]
        for remote in remotes:
            remote.close()
    for k, (labels, (full, resumed)) in enumerate(zip(got, runs, strict=True)):
        assert len(labels) == 6, f"video {k}: a frame lost or repeated"
        want = full if exact or k == 1 else resumed  # the video on b never moved
        for t, (g, w) in enumerate(zip(labels, want, strict=True)):
            np.testing.assert_array_equal(g, w, err_msg=f"video {k}, frame {t}")
    if not exact:
        after = [_agreement(resumed[KILL_AFTER + 1:], full[KILL_AFTER + 1:]) for full, resumed in runs]
        print(f"labels equal to an uninterrupted run after the failover, per frame: {after}")
        assert min(after[0]) >= AGREEMENT["golden"] and min(after[2]) >= AGREEMENT["moving, a late object"]


def test_an_expired_video_is_reprimed_where_it_was(small_server, small_export):
    """--idle-timeout 2 closes the video; its next frame re-primes it on the same server."""
    frames, mask = moving_video(5, 32, 48, objects=2, seed=3)
    with VideoSegmenter.open(small_export, "onnxruntime", threads=1) as local:
        full, resumed = _runs(local, frames, {0: mask}, 1)
    with SegmentationClient(small_server.url, exact_failover=False) as client, client.video() as remote:
        got = [remote.start(frames[0], mask), remote.step(frames[1])]
        time.sleep(3.5)  # reaped: checked every 0.5 s
        got += [remote.step(f) for f in frames[2:]]
        assert remote.moves == 1 and remote.server == small_server.url
    np.testing.assert_array_equal(np.stack(got), np.stack(resumed))
    assert min(_agreement(resumed[2:], full[2:])) >= AGREEMENT["small export"]


def test_a_restarted_server_gets_its_video_back(server_python, small_export, tmp_path):
    """A server stopped and started again at the same address: the video's next frame finds it gone there (and
    its shared-memory region unknown) and re-primes it exactly; the client reads the new server's token."""
    frames, mask = moving_video(5, 32, 48, objects=2, seed=6)
    with VideoSegmenter.open(small_export, "onnxruntime", threads=1) as local:
        full = list(local.segment(frames, mask))
    first = ServerProcess(small_export, "--threads", "1", python=server_python, log=tmp_path / "first.log")
    again = ServerProcess(small_export, "--threads", "1", python=server_python, log=tmp_path / "again.log")
    again.grpc_port, again.http_port, again.metrics_port, again.url = (first.grpc_port, first.http_port,
                                                                      first.metrics_port, first.url)
    with first:
        client = SegmentationClient(first.url, shared_memory=True)
        remote = client.video()
        got = [remote.start(frames[0], mask), remote.step(frames[1])]
    with client, again:
        got += [remote.step(f) for f in frames[2:]]
        assert remote.moves == 1 and remote.server == first.url
        remote.close()
    np.testing.assert_array_equal(np.stack(got), np.stack(full))
