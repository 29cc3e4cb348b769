"""simvos-serve starts Triton again when PyTriton's start-up handshake with its model instances is refused, and
gives up after three starts with an error naming the cause.

The refusal is real, provoked: the server gets a PyTriton home of its own, and before Triton loads the model a plain
file is put where a new workspace's handshake socket goes. The second model instance then connects to a path nobody
listens on (ConnectionRefusedError, the failure seen at random with 2 instances) and the first cannot open its
handshake server there; the next start has a new workspace.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from simvos_trt.errors import ServeError
from simvos_trt.serve import MODEL, SegmentationClient, ServerProcess


class HandshakeBlocker(threading.Thread):
    """Puts a plain file at the handshake socket of each of the first ``workspaces`` PyTriton workspaces in
    ``home``, as soon as each appears."""

    def __init__(self, home: Path, workspaces: int) -> None:
        super().__init__(daemon=True)
        self.home, self.workspaces, self.stop = home, workspaces, threading.Event()
        self.blocked: list[Path] = []

    def run(self) -> None:
        while len(self.blocked) < self.workspaces and not self.stop.wait(0.001):
            for workspace in sorted(set(self.home.glob("workspace_*")) - set(self.blocked)):
                (workspace / f"{MODEL}-config.sock").write_text("not a socket")
                self.blocked.append(workspace)


@pytest.fixture
def pytriton_home(monkeypatch) -> Iterator[Path]:
    """A PyTriton home for the server's child process, short: a Unix socket's path has at most 107 bytes."""
    with tempfile.TemporaryDirectory(prefix="pytriton-") as home:
        monkeypatch.setenv("PYTRITON_HOME", home)
        yield Path(home)


def test_a_refused_handshake_starts_triton_again(server_python, small_export, pytriton_home, tmp_path):
    blocker = HandshakeBlocker(pytriton_home, workspaces=1)
    blocker.start()
    log = tmp_path / "server.log"
    try:
        with ServerProcess(small_export, "--threads", "1", "--instances", "2", log=log) as server, \
                SegmentationClient(server.url) as client, client.video() as video:
            labels = video.start(np.zeros((32, 48, 3), np.uint8), np.ones((32, 48), np.uint8))
            assert labels.shape == (32, 48)
    finally:
        blocker.stop.set()
    assert len(blocker.blocked) == 1
    text = log.read_text()
    assert "did not start (attempt 1 of 3): its model instances' start-up handshake was refused" in text
    assert "ConnectionRefusedError" in text
    assert "attempt 2 of 3" not in text


def test_a_handshake_refused_three_times_is_a_serve_error_naming_it(server_python, small_export, pytriton_home,
                                                                    tmp_path):
    blocker = HandshakeBlocker(pytriton_home, workspaces=3)
    blocker.start()
    log = tmp_path / "server.log"
    try:
        with pytest.raises(ServeError, match="did not become ready"), \
                ServerProcess(small_export, "--threads", "1", "--instances", "2", log=log):
            pass
    finally:
        blocker.stop.set()
    assert len(blocker.blocked) == 3
    text = log.read_text()
    assert "attempt 2 of 3" in text
    assert ("simvos-serve: error: Triton Inference Server did not start in 3 attempts: PyTriton's start-up "
            "handshake with its model instances was refused each time (last: ") in text
    assert "ConnectionRefusedError" in text.rsplit("did not start in 3 attempts", 1)[1]
