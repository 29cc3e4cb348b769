"""Videos on the server end with the video, after an idle timeout, or never beyond --max-videos; memory stays flat."""

from __future__ import annotations

import ipaddress
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def test_a_vanished_client_frees_its_video_and_its_shared_memory(small_server, small_client):
    import tritonclient.grpc as grpc

    from simvos_trt.serve.shm import TOKEN_HEADER, read_token, unregister_orphans

    token = read_token(small_server.grpc_port)
    assert token is not None
    with grpc.InferenceServerClient(small_server.url) as own:
        def regions() -> set[str]:
            return set(own.get_system_shared_memory_status(headers={TOKEN_HEADER: token}, as_json=True)
                       .get("regions", {}))

        before = regions()
        subprocess.run([sys.executable, "-c", VANISHING_CLIENT, small_server.url], check=True, timeout=60)
        vanished = regions() - before
        assert len(vanished) == 1  # its video's region, left registered
        for _ in range(50):  # its resource tracker unlinks the segment when it notices the exit
            orphans = unregister_orphans(own, token)
            if orphans:
                break
            time.sleep(0.1)
        assert set(orphans) == vanished and regions() == before
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
            rss.append(_rss_mb(small_server.process.pid))
    growth = rss[1] - rss[0]
    print(f"server RSS after 50 videos {rss[0]:.1f} MB, after 200 {rss[1]:.1f} MB")
    assert growth < 8, f"memory grew {growth:.1f} MB over 150 videos"


def test_serve_cli_ready_line_and_clean_stop(server_python, small_export, tmp_path):
    with ServerProcess(small_export, "--instances", "2", python=server_python, log=tmp_path / "server.log") as server:
        assert server.ready_line.startswith("simvos-serve: ready: model 'simvos' serves ")
        assert f"(onnxruntime, 32x48) with 2 instance(s) on 127.0.0.1: HTTP :{server.http_port}, gRPC " \
            f":{server.grpc_port}" in server.ready_line
        t0 = time.monotonic()
        assert server.stop(signal.SIGINT) == 0
    assert time.monotonic() - t0 < 30
    assert (tmp_path / "server.log").read_text().strip().endswith("simvos-serve: stopped")


def test_listeners_are_on_loopback_and_the_triton_log_private(server_python, small_export):
    """By default every endpoint listens on 127.0.0.1 (read from the processes' sockets), and Triton's log goes
    to a folder only the server's user can open."""
    with ServerProcess(small_export, "--threads", "1", python=server_python) as server:  # no log=: the default
        processes = [psutil.Process(server.process.pid), *psutil.Process(server.process.pid).children(recursive=True)]
        listening = {(c.laddr.ip, c.laddr.port) for p in processes for c in p.net_connections("inet")
                     if c.status == psutil.CONN_LISTEN}
        assert {server.http_port, server.grpc_port, server.metrics_port} <= {port for _, port in listening}
        addresses = {ipaddress.ip_address(ip) for ip, _ in listening}  # gRPC's socket is IPv6: ::ffff:127.0.0.1
        assert {str(getattr(a, "ipv4_mapped", None) or a) for a in addresses} == {"127.0.0.1"}, listening
        log_file = Path(server.ready_line.rsplit("Triton log ", 1)[1])
    try:
        assert log_file.name == "triton.log" and log_file.is_file()
        assert log_file.parent.parent == Path(tempfile.gettempdir())
        assert stat.S_IMODE(log_file.parent.stat().st_mode) == 0o700
    finally:
        shutil.rmtree(log_file.parent)
