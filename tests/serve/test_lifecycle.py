"""Videos on the server end with the video, after an idle timeout, or never beyond --max-videos; memory stays flat."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
from videos import moving_video

from simvos_trt.errors import ServeError
from simvos_trt.serve import FrameRequest, ServerProcess

#: A client that starts a video and dies without ending it.
VANISHING_CLIENT = """
import os, sys
import numpy as np
from simvos_trt.serve import SegmentationClient
client = SegmentationClient(sys.argv[1])
client.video("vanished").start(np.zeros((32, 48, 3), np.uint8), np.ones((32, 48), np.uint8))
os._exit(0)
"""


def test_a_vanished_client_frees_its_video(small_server, small_client):
    subprocess.run([sys.executable, "-c", VANISHING_CLIENT, small_server.url], check=True, timeout=60)
    frame, mask = np.zeros((32, 48, 3), np.uint8), np.ones((32, 48), np.uint8)
    with pytest.raises(ServeError, match="video 'vanished' is already open"):
        small_client.infer(FrameRequest("vanished", start=True, frame=frame, mask=mask))
    time.sleep(3.5)  # --idle-timeout 2, checked every 0.5 s
    with pytest.raises(ServeError, match=r"video 'vanished' is not open \(it was closed: no request for 2 s\)"):
        small_client.infer(FrameRequest("vanished", frame=frame))
    small_client.infer(FrameRequest("vanished", start=True, frame=frame, mask=mask, end=True))


def test_max_videos(small_client):
    frame, mask = np.zeros((32, 48, 3), np.uint8), np.ones((32, 48), np.uint8)
    videos = [small_client.video(f"v{i}") for i in range(4)]
    for v in videos[:3]:
        v.start(frame, mask)
    with pytest.raises(ServeError, match="the server has 3 open videos, its limit"):
        videos[3].start(frame, mask)
    videos[0].close()
    videos[3].start(frame, mask)
    for v in videos[1:]:
        v.close()


def _rss_mb(pid: int) -> float:
    """Resident memory of the server and its children (tritonserver, the Python backend stubs), MB."""
    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


@pytest.mark.slow
def test_200_short_videos_keep_memory_flat(small_server, small_client):
    """Large frames into the small engine: a leak of one frame per request would show as ~100 MB.

    A session left behind would fill the server's 3 video slots, and the next start would be refused.
    """
    frames, mask = moving_video(2, 240, 352, objects=2, seed=1)
    rss = []
    for i in range(200):
        labels = list(small_client.segment(frames, mask))
        assert len(labels) == 2 and labels[1].shape == (240, 352)
        if i in (49, 199):
            rss.append(_rss_mb(small_server.pid))
    growth = rss[1] - rss[0]
    print(f"server RSS after 50 videos {rss[0]:.1f} MB, after 200 {rss[1]:.1f} MB")
    assert growth < 8, f"memory grew {growth:.1f} MB over 150 videos"


def test_serve_cli_ready_line_and_clean_stop(server_python, small_export, tmp_path):
    with ServerProcess(small_export, "--instances", "2", python=server_python, log=tmp_path / "server.log") as server:
        assert server.ready_line.startswith("simvos-serve: ready: model 'simvos' serves ")
        assert f"(onnxruntime, 32x48) with 2 instance(s): HTTP :{server.http_port}, gRPC :{server.grpc_port}" \
            in server.ready_line
        t0 = time.monotonic()
        assert server.stop(signal.SIGINT) == 0
    assert time.monotonic() - t0 < 30
    assert (tmp_path / "server.log").read_text().strip().endswith("simvos-serve: stopped")
