"""Shared memory is offered to local clients of the server's own user only."""

from __future__ import annotations

import os

import pytest

from simvos_trt.serve import shm


@pytest.mark.parametrize("url, local", [("127.0.0.1:8001", True), ("localhost:8001", True), ("[::1]:8001", True),
                                        ("127.3.0.1:8001", True), ("10.0.0.7:8001", False),
                                        ("gpu-host:8001", False)])
def test_loopback_addresses(url, local):
    assert shm.is_loopback(url) is local


def test_the_access_token_is_private_to_the_servers_user(tmp_path, monkeypatch):
    monkeypatch.setattr(shm.tempfile, "gettempdir", lambda: str(tmp_path))
    assert shm.read_token(9001) is None
    path = shm.write_token(9001, "secret")
    assert path == tmp_path / f"simvos-serve-{os.getuid()}" / "grpc-9001.token"
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert shm.read_token(9001) == "secret" and shm.read_token(9002) is None
    path.parent.chmod(0o755)  # a folder others may open is not trusted
    assert shm.read_token(9001) is None
    with pytest.raises(shm.ServeError, match="is not a folder of this user's that only it may open"):
        shm.write_token(9001, "other")
